// `sinklab export`: a checkpoint's weights as Hugging Face-named safetensors.
// LLaMA-style names and layouts are already Hugging Face's. GPT-2 stores its attention and MLP
// weights as Conv1D (in, out): those four matrices are transposed on export; a tied lm_head is
// omitted (transformers re-ties it).
#pragma once
#include <string>

namespace sinklab::train {

// Returns the path written (default: <checkpoint without .h5>.safetensors).
std::string export_checkpoint(const std::string& checkpoint, const std::string& out = "");

}  // namespace sinklab::train
