// Tokenizers: raw bytes (vocab 256) and byte-level BPE trained on a corpus (GPT-2 style merges
// over bytes, no pre-tokenizer regex dependency). Saved as JSON with a format version.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/config.h"

namespace sinklab::train {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "bpe"
  virtual int64_t vocab_size() const = 0;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Writes JSON atomically (temporary file, then rename).
  virtual void save(const std::string& path) const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Trains byte-level BPE: starts from the 256 bytes and merges the most frequent adjacent pair
// until vocab_size tokens exist (ties broken by the smaller pair, so training is deterministic).
// Pairs never cross a word boundary: text is pre-split into chunks at whitespace/punctuation
// boundaries (a leading space stays with its word, as in GPT-2).
std::unique_ptr<Tokenizer> train_bpe(const std::string& corpus, int64_t vocab_size);

// Loads a tokenizer JSON written by save(); "byte" returns the byte tokenizer. Throws IOError
// naming the file on a missing file, bad JSON or a wrong format version.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// The tokenizer a run's data was prepared with: data.tokenizer ("byte", a file), by default
// <data.dir>/tokenizer.json. Throws IOError naming data.tokenizer when the file is missing.
std::unique_ptr<Tokenizer> load_data_tokenizer(const DataSection& data);

}  // namespace sinklab::train
