// Text generation from a model: temperature sampling with Philox (deterministic per seed).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "train/model.h"

namespace sinklab::train {

// Extends `prompt` by `count` tokens (the context is cropped to block_size). temperature 0 =
// greedy. Draw i uses Philox(seed, stream, i). Only ids below `vocab_limit` are drawn (the
// tokenizer's vocabulary: a model's vocabulary padded to model.vocab_multiple has ids no
// tokenizer decodes, 47 of GPT-2's 50,304); 0 or more than the model's = all. `stop` (optional)
// is asked before each token: once it says true, the tokens so far are returned (a stop signal
// ends a long sample).
std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt, int64_t count,
                                   double temperature, uint64_t seed, uint64_t stream,
                                   int64_t vocab_limit = 0, const std::function<bool()>& stop = {});

}  // namespace sinklab::train
