// Writes a model, one batch, and sinklab's logits, loss and gradients to a safetensors file so
// that an independent implementation (scripts/crosscheck_torch.py) can rebuild the same model
// and compare. The weights are moved off their initial values by a few AdamW steps on random
// tokens, so biases, norms and gammas are not trivially 0 or 1.
#pragma once
#include <cstdint>
#include <string>

#include "train/config.h"

namespace sinklab::train {

void export_reference(const RunConfig& config, int64_t batch_size, const std::string& path);

}  // namespace sinklab::train
