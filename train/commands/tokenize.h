// `sinklab tokenize`: one tokenizer applied to a file or a string, and the tokenizer written as
// Hugging Face files. It is how scripts compare sinklab's ids with other implementations
// (scripts/interop_tokenizer.py: tiktoken and tokenizers; tests/tokenizer_js_test.sh: their
// JavaScript ports).
//   sinklab tokenize --tokenizer gpt2 --text "Hello world"            # ids on stdout
//   sinklab tokenize --tokenizer gpt2 --file data/raw/sotu.txt --out sotu.bin
//   sinklab tokenize --tokenizer data/quickstart/tokenizer.json --write-hf hf_tok/
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

namespace sinklab::train {

struct TokenizeOptions {
  std::string tokenizer;  // byte | gpt2 | hf:<path> | a tokenizer file (train/data/tokenizer_spec.h)
  std::string file;       // text to encode (raw bytes) ...
  std::string text;       // ... or this string
  std::string out;        // ids as an llm.c shard (train/data/shards.h); "" = on stdout
  std::string write_hf;   // folder for tokenizer.json, tokenizer_config.json, special_tokens_map.json
  int64_t model_max_length = 0;  // tokenizer_config.json's, when > 0
};

// Throws IOError / ValueError / ConfigError with the file or option named.
void run_tokenize(const TokenizeOptions& options, std::ostream& out);

}  // namespace sinklab::train
