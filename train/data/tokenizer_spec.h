// Which tokenizer a name stands for: data.tokenizer, prepare.tokenizer (besides bpe, which
// `prepare` trains) and `sinklab tokenize --tokenizer`:
//   byte         raw bytes, ids 0..255
//   gpt2         GPT-2's byte-level BPE, 50,257 ids (train/data/gpt2_vocab.h)
//   hf:<path>    a Hugging Face tokenizer.json, or a folder holding one
//                (train/data/hf_tokenizer_json.h says which ones)
//   <path>       a tokenizer file that `sinklab prepare` wrote (sinklab's JSON or tokenizer.json)
#pragma once
#include <memory>
#include <string>

#include "train/config.h"
#include "train/data/tokenizer.h"

namespace sinklab::train {

inline constexpr const char* kHfPrefix = "hf:";

// byte, gpt2 or hf:<path>: a name rather than a file of `sinklab prepare`.
bool is_named_tokenizer(const std::string& spec);

// The tokenizer `spec` stands for. Throws IOError naming the file, or ConfigError for "hf:"
// without a path; `key` (data.tokenizer) names the setting in messages.
std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec,
                                          const std::string& key = "data.tokenizer");

// The tokenizer of a run's data: data.tokenizer, by default the file `prepare` wrote beside the
// shards (data.dir/tokenizer.json). The trainer decodes samples with it; an export of a
// checkpoint writes it as Hugging Face files (train/data/hf_tokenizer_json.h).
std::unique_ptr<Tokenizer> open_data_tokenizer(const DataSection& data);

}  // namespace sinklab::train
