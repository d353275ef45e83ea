#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/optimizer.h"
#endif

namespace sinklab::train {

double learning_rate(const OptimSection& optim, int64_t total_steps, int64_t step) {
  const int64_t decay_steps = optim.decay_steps > 0 ? optim.decay_steps : total_steps;
  if (optim.warmup_steps > 0 && step < optim.warmup_steps)
    return optim.lr * static_cast<double>(step + 1) / static_cast<double>(optim.warmup_steps);
  if (step >= decay_steps) return optim.min_lr;
  const double span = std::max<int64_t>(1, decay_steps - optim.warmup_steps);
  const double progress = static_cast<double>(step - optim.warmup_steps) / span;
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return optim.min_lr + cosine * (optim.lr - optim.min_lr);
}

namespace {
[[noreturn, maybe_unused]] void no_cuda(const char* what) {
  SINKLAB_FAIL(DeviceError, what << " on a CUDA tensor in a build without CUDA",
               "rebuild with CUDA or use run.device: cpu");
}
}  // namespace

double global_grad_norm(const ParameterSet& params) {
  Tensor g = params.flat_grads();
  if (g.device().is_cuda()) {
#if defined(SINKLAB_HAVE_CUDA)
    return std::sqrt(cuda::sum_of_squares(g));
#else
    no_cuda("global_grad_norm");
#endif
  }
  const float* p = g.data<float>();
  const int64_t n = g.numel();
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
  parallel_for(chunks, [&](int64_t c) {
    double acc = 0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
      acc += static_cast<double>(p[i]) * p[i];
    partial[c] = acc;
  });
  double total = 0;
  for (double v : partial) total += v;
  return std::sqrt(total);
}

double clip_gradients(ParameterSet& params, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  const double factor = max_norm / (norm + 1e-6);
  Tensor g = params.flat_grads();
  if (g.device().is_cuda()) {
#if defined(SINKLAB_HAVE_CUDA)
    cuda::scale_in_place(g, static_cast<float>(factor));
    return factor;
#else
    no_cuda("clip_gradients");
#endif
  }
  float* p = g.data<float>();
  const float f = static_cast<float>(factor);
  parallel_for(g.numel(), [&](int64_t i) { p[i] *= f; }, 1 << 14);
  return factor;
}

bool AdamW::decays(const ParamSpec& spec, const OptimSection& optim) {
  if (!spec.decay) return false;
  return !spec.embedding || optim.decay_embeddings;
}

AdamW::AdamW(const ParameterSet& params, const OptimSection& optim, Shard shard)
    : optim_(optim), shard_(shard), numel_(params.numel()) {
  if (shard_.end < 0) shard_.end = numel_;
  SINKLAB_CHECK(0 <= shard_.begin && shard_.begin <= shard_.end && shard_.end <= numel_,
                ValueError,
                "AdamW shard [" << shard_.begin << ", " << shard_.end << ") of " << numel_
                                << " parameters",
                "a shard is a range inside the flat parameter buffer");
  const int64_t n = shard_.end - shard_.begin;
  m_ = Tensor::zeros({n}, DType::F32, params.flat_values().device());
  v_ = Tensor::zeros({n}, DType::F32, params.flat_values().device());
  for (const Param& p : params.params()) decay_.push_back(decays(p.spec, optim) ? 1 : 0);
  if (params.flat_values().device().is_cuda()) {  // per-element decay mask for the one kernel
    std::vector<int32_t> mask(n);
    for (size_t k = 0; k < params.params().size(); ++k) {
      const Param& p = params.params()[k];
      const int64_t begin = std::max(p.offset, shard_.begin);
      const int64_t end = std::min(p.offset + p.value.numel(), shard_.end);
      if (begin < end)
        std::fill(mask.begin() + (begin - shard_.begin), mask.begin() + (end - shard_.begin),
                  decay_[k]);
    }
    decay_mask_ = Tensor::from_ints(mask, {n}).to_device(m_.device());
  }
}

AdamW AdamW::on_host(const ParameterSet& params, const OptimSection& optim) {
  AdamW a;
  a.optim_ = optim;
  a.numel_ = params.numel();
  a.shard_ = {0, a.numel_};
  a.m_ = Tensor::zeros({a.numel_}, DType::F32, Device::cpu());
  a.v_ = Tensor::zeros({a.numel_}, DType::F32, Device::cpu());
  for (const Param& p : params.params()) a.decay_.push_back(decays(p.spec, optim) ? 1 : 0);
  return a;
}

void AdamW::step(ParameterSet& params, double lr) {
  SINKLAB_CHECK(m_.device() == params.flat_values().device(), ValueError,
                "AdamW::step: moments on " << m_.device().str() << ", parameters on "
                                           << params.flat_values().device().str(),
                "AdamW::on_host holds state for checkpoints; step the trainer's AdamW");
  ++t_;
  const double b1 = optim_.beta1, b2 = optim_.beta2;
  const float bias1 = static_cast<float>(1.0 - std::pow(b1, static_cast<double>(t_)));
  const float bias2 = static_cast<float>(1.0 - std::pow(b2, static_cast<double>(t_)));
  if (m_.device().is_cuda()) {
#if defined(SINKLAB_HAVE_CUDA)
    const int64_t n = shard_.end - shard_.begin;
    Tensor w = params.flat_values().narrow_view(0, shard_.begin, n);  // (shard) views
    Tensor g = params.flat_grads().narrow_view(0, shard_.begin, n);
    cuda::AdamWHyper h{static_cast<float>(lr), static_cast<float>(b1), static_cast<float>(b2),
                       static_cast<float>(optim_.eps), static_cast<float>(optim_.weight_decay),
                       bias1, bias2};
    cuda::adamw_step(w, g, m_, v_, decay_mask_, h);
    return;
#else
    no_cuda("AdamW");
#endif
  }
  float* w = params.flat_values().data<float>();
  const float* g = params.flat_grads().data<float>();
  float* m = m_.data<float>();  // (shard): element i of the flat buffers is m[i - sb]
  float* v = v_.data<float>();
  const int64_t sb = shard_.begin;
  const auto& list = params.params();
  for (size_t k = 0; k < list.size(); ++k) {
    const int64_t begin = std::max(list[k].offset, shard_.begin);
    const int64_t end = std::min(list[k].offset + list[k].value.numel(), shard_.end);
    if (begin >= end) continue;  // outside this shard
    const float wd = decay_[k] ? static_cast<float>(lr * optim_.weight_decay) : 0.0f;
    const float lr_f = static_cast<float>(lr), b1f = static_cast<float>(b1),
                b2f = static_cast<float>(b2), eps = static_cast<float>(optim_.eps);
    parallel_for(end - begin, [&](int64_t j) {
      const int64_t i = begin + j, s = i - sb;
      m[s] = b1f * m[s] + (1.0f - b1f) * g[i];
      v[s] = b2f * v[s] + (1.0f - b2f) * g[i] * g[i];
      const float m_hat = m[s] / bias1, v_hat = v[s] / bias2;
      w[i] -= lr_f * m_hat / (std::sqrt(v_hat) + eps) + wd * w[i];
    }, 1 << 14);
  }
}

}  // namespace sinklab::train
