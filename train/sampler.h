// Text generation from a model: temperature sampling with Philox (deterministic per seed).
#pragma once
#include <cstdint>
#include <vector>

#include "train/model.h"

namespace sinklab::train {

// Extends `prompt` by `count` tokens (the context is cropped to block_size). temperature 0 =
// greedy. Draw i uses Philox(seed, stream, i).
std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt, int64_t count,
                                   double temperature, uint64_t seed, uint64_t stream);

}  // namespace sinklab::train
