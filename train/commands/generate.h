// `sinklab generate <checkpoint | Hugging Face folder> --prompt TEXT`: sampling with temperature
// and top-k from any model sinklab reads (train/io/model_source.h), outside of training. The
// prompt is encoded and the result decoded with the model's own tokenizer (the run's
// data.tokenizer, or the folder's tokenizer.json).
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace sinklab::train {

struct GenerateOptions {
  std::string prompt;        // text; empty = start from the end-of-text token, if the model has one
  int64_t tokens = 64;       // tokens to add
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = all tokens
  uint64_t seed = 0;         // Philox seed of the draws
  std::string device = "cpu";  // cpu, cuda[:N], or auto: cuda where a GPU is present
  std::string tokenizer;     // overrides the model's tokenizer (as data.tokenizer takes it)
};

struct Generation {
  std::vector<int32_t> prompt_ids, ids;  // ids: the prompt's followed by the new ones
  std::string text;                      // all of ids decoded
};

// Throws ConfigError naming the option for a bad value, IOError naming a missing file.
Generation generate(const std::string& model_path, const GenerateOptions& options);

}  // namespace sinklab::train
