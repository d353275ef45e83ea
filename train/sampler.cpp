#include "train/sampler.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/philox.h"

namespace sinklab::train {

std::vector<int32_t> sample_tokens(const GPT& model, std::vector<int32_t> prompt, int64_t count,
                                   double temperature, uint64_t seed, uint64_t stream,
                                   int64_t vocab_limit, const std::function<bool()>& stop) {
  autograd::NoGradGuard no_grad;
  SINKLAB_CHECK(!prompt.empty(), ValueError, "sample_tokens: empty prompt",
                "give at least one token");
  const int64_t block = model.config().block_size;
  for (int64_t i = 0; i < count; ++i) {
    if (stop && stop()) break;
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(prompt.size()) - block);
    std::vector<int32_t> context(prompt.begin() + start, prompt.end());
    const int64_t T = static_cast<int64_t>(context.size());
    Tensor ids = Tensor::from_ints(context, {1, T});
    Tensor logits = model.forward(ids, Tensor()).logits;  // (1, T, V)
    const int64_t model_V = logits.size(2);
    const int64_t V = vocab_limit > 0 ? std::min(vocab_limit, model_V) : model_V;
    std::vector<double> last = logits.narrow_view(1, T - 1, 1).to_doubles();  // (model_V) at T - 1
    last.resize(static_cast<size_t>(V));  // the ids that can be drawn
    int32_t next = 0;
    if (temperature <= 0) {
      next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    } else {
      const double mx = *std::max_element(last.begin(), last.end());
      double total = 0;
      for (double& v : last) total += v = std::exp((v - mx) / temperature);
      double u = philox_uniform(seed, stream, static_cast<uint64_t>(i)) * total;
      next = static_cast<int32_t>(V - 1);
      for (int64_t j = 0; j < V; ++j) {
        u -= last[j];
        if (u < 0) {
          next = static_cast<int32_t>(j);
          break;
        }
      }
    }
    prompt.push_back(next);
  }
  return prompt;
}

}  // namespace sinklab::train
