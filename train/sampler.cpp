#include "train/sampler.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/philox.h"

namespace sinklab::train {

int32_t sample_from_logits(std::vector<double> logits, const SamplingOptions& options, double u) {
  if (options.vocab_limit > 0 && options.vocab_limit < static_cast<int64_t>(logits.size()))
    logits.resize(static_cast<size_t>(options.vocab_limit));
  const int64_t V = static_cast<int64_t>(logits.size());
  if (options.temperature <= 0)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  double threshold = -INFINITY;  // top-k: the k-th largest logit; smaller ones are not drawn
  if (options.top_k > 0 && options.top_k < V) {
    std::vector<double> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (options.top_k - 1), sorted.end(),
                     std::greater<double>());
    threshold = sorted[static_cast<size_t>(options.top_k - 1)];
  }
  const double mx = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (double& v : logits) total += v = v >= threshold ? std::exp((v - mx) / options.temperature) : 0;
  double left = u * total;
  int32_t last_drawable = 0;
  for (int64_t j = 0; j < V; ++j) {
    if (logits[j] <= 0) continue;
    last_drawable = static_cast<int32_t>(j);
    left -= logits[j];
    if (left < 0) return last_drawable;
  }
  return last_drawable;  // rounding left a sliver: the last id that could be drawn
}

std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt,
                                   const SamplingOptions& options,
                                   const std::function<bool()>& stop) {
  autograd::NoGradGuard no_grad;
  SINKLAB_CHECK(!prompt.empty(), ValueError, "sample_tokens: empty prompt",
                "give at least one token");
  const int64_t block = model.config().block_size;
  for (int64_t i = 0; i < options.count; ++i) {
    if (stop && stop()) break;
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(prompt.size()) - block);
    std::vector<int32_t> context(prompt.begin() + start, prompt.end());
    const int64_t T = static_cast<int64_t>(context.size());
    Tensor ids = Tensor::from_ints(context, {1, T});
    Tensor logits = model.forward(ids, Tensor()).logits;  // (1, T, V)
    const double u = philox_uniform(options.seed, options.stream, static_cast<uint64_t>(i));
    prompt.push_back(sample_from_logits(logits.narrow_view(1, T - 1, 1).to_doubles(), options, u));
  }
  return prompt;
}

}  // namespace sinklab::train
