// `sinklab forward <model> --ids 1,2,3 | --text TEXT --out FILE.safetensors`: one forward pass of
// a checkpoint or a Hugging Face model (train/io/model_source.h) over one sequence, its logits
// and its next-token loss written for another implementation to compare with
// (scripts/interop_check.py compares with transformers).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sinklab::train {

struct ForwardOptions {
  std::vector<int32_t> ids;  // the sequence; or
  std::string text;          // text, encoded with the model's tokenizer
  std::string tokenizer;     // overrides the model's tokenizer (as data.tokenizer takes it)
  std::string device = "cpu";  // cpu, cuda[:N], or auto: cuda where a GPU is present
  std::string out;           // safetensors: ids (1, T) I32, logits (1, T, V) F32, loss () F32
};

struct ForwardOutput {
  std::vector<int32_t> ids;
  double loss = 0;  // mean cross-entropy of ids[1:] given ids[:-1] (transformers' labels=ids)
};

// Throws ConfigError naming the option for a bad sequence (empty, ids outside the vocabulary,
// longer than block_size), IOError naming a file.
ForwardOutput forward_to_file(const std::string& model_path, const ForwardOptions& options);

}  // namespace sinklab::train
