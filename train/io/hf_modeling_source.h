// scripts/hf/modeling_sinklab.py, built into the binary (CMake writes it into a generated source
// file), so that `sinklab export --format hf` can put it beside a config.json that names
// SinklabForCausalLM wherever the binary runs.
#pragma once
#include <string_view>

namespace sinklab::train {

std::string_view sinklab_modeling_py();

}  // namespace sinklab::train
