// Tokenizers: raw bytes (vocab 256) and byte-level BPE trained on a corpus (GPT-2 style merges
// over bytes, no pre-tokenizer regex dependency), saved as sinklab's JSON with a format version;
// and byte-level BPE from elsewhere (GPT-2's own, a Hugging Face tokenizer.json:
// train/data/byte_level_bpe.h), saved as a Hugging Face tokenizer.json. Which one a config names:
// train/data/tokenizer_spec.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/data/byte_level_bpe.h"

namespace sinklab::train {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "bpe" | "gpt2" | "hf"
  virtual int64_t vocab_size() const = 0;  // the largest id + 1
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Writes JSON atomically (temporary file, then rename): sinklab's format for byte and bpe, a
  // Hugging Face tokenizer.json for gpt2 and hf. load_tokenizer reads either.
  virtual void save(const std::string& path) const = 0;
  // The same tokenizer as byte-level BPE data: what its Hugging Face tokenizer.json holds
  // (train/data/hf_tokenizer_json.h writes it). Encoding with it gives the same ids.
  virtual ByteLevelBpeModel byte_level_bpe() const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Trains byte-level BPE: starts from the 256 bytes and merges the most frequent adjacent pair
// until vocab_size tokens exist (ties broken by the smaller pair, so training is deterministic).
// Pairs never cross a word boundary: text is pre-split into chunks at whitespace/punctuation
// boundaries (a leading space stays with its word, as in GPT-2).
std::unique_ptr<Tokenizer> train_bpe(const std::string& corpus, int64_t vocab_size);

// Loads a tokenizer JSON written by save(): sinklab's format ("format": "sinklab-tokenizer"), or
// a Hugging Face tokenizer.json (it has a "model"; train/data/hf_tokenizer_json.h). Throws
// IOError naming the file on a missing file, bad JSON or a wrong format version.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace sinklab::train
