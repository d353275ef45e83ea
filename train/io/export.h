// `sinklab export`: a checkpoint for the Hugging Face ecosystem.
//   --format safetensors  the weights alone, Hugging Face names and layouts (train/io/hf_weights.h)
//   --format hf           a folder from_pretrained loads as is: config.json (GPT2Config or
//                         LlamaConfig; for head-wise RMSNorm, sigmoid attention or the isolate
//                         mask SinklabConfig, with modeling_sinklab.py for trust_remote_code),
//                         generation_config.json, model.safetensors, and the run's tokenizer as
//                         tokenizer.json with its tokenizer_config.json
#pragma once
#include <string>

namespace sinklab::train {

enum class ExportFormat { Safetensors, HuggingFace };

struct ExportOptions {
  ExportFormat format = ExportFormat::Safetensors;
  std::string out;        // safetensors: file (default beside the checkpoint) or a folder to
                          // write it in; hf: the folder (default <checkpoint without .h5>-hf)
  std::string tokenizer;  // hf: the tokenizer to write (default: the run's data.tokenizer)
};

// Returns the path written (the file, or the folder for --format hf).
std::string export_checkpoint(const std::string& checkpoint, const ExportOptions& options = {});

}  // namespace sinklab::train
