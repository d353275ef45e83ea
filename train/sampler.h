// Text generation from a model: temperature and top-k sampling with Philox (deterministic per
// seed).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "train/model.h"

namespace sinklab::train {

struct SamplingOptions {
  int64_t count = 32;        // tokens to add
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // keep the k most likely tokens (and ties with the k-th); 0 = all
  int64_t vocab_limit = 0;   // draw only ids below this (a tokenizer smaller than the model's
                             // padded vocabulary); 0 = every id of the model
  uint64_t seed = 0;         // draw i uses Philox(seed, stream, i)
  uint64_t stream = 0;
};

// Extends `prompt` by options.count tokens (the context is cropped to block_size). `stop`
// (optional) is asked before each token: once it says true, the tokens so far are returned
// (a stop signal ends a long sample).
std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt,
                                   const SamplingOptions& options,
                                   const std::function<bool()>& stop = {});

// One draw from softmax(logits / temperature) restricted as `options` says, with the uniform
// number u in [0, 1). temperature 0: the first largest logit.
int32_t sample_from_logits(std::vector<double> logits, const SamplingOptions& options, double u);

}  // namespace sinklab::train
