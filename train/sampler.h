// Text generation from a model: temperature sampling with Philox (deterministic per seed).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "train/model.h"

namespace sinklab::train {

// Extends `prompt` by `count` tokens (the context is cropped to block_size). temperature 0 =
// greedy. Draw i uses Philox(seed, stream, i). `stop` (optional) is asked before each token:
// once it says true, the tokens so far are returned (a stop signal ends a long sample).
std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt, int64_t count,
                                   double temperature, uint64_t seed, uint64_t stream,
                                   const std::function<bool()>& stop = {});

}  // namespace sinklab::train
