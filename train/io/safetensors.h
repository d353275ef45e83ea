// safetensors files (Hugging Face): 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian data. Written atomically (temporary file, then rename).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace sinklab::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Reads F32, F64, BF16 and I32 tensors; throws IOError naming the file on a malformed file.
std::map<std::string, Tensor> read_safetensors(const std::string& path);

}  // namespace sinklab::train
