#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "ops/optimizer.h"

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

double global_grad_norm(const ParameterSet& params) {
  return std::sqrt(ops::sum_of_squares(params.flat_grads()));
}

double clip_factor(double norm, double max_norm) { return ops::clip_factor(norm, max_norm); }

double clip_gradients(ParameterSet& params, double norm, double max_norm) {
  const double factor = clip_factor(norm, max_norm);
  if (factor == 1.0) return 1.0;
  Tensor g = params.flat_grads();
  ops::scale_in_place(g, factor);
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
  decay_mask_ = decay_mask(params, m_.device());
}

Tensor AdamW::decay_mask(const ParameterSet& params, Device device) const {
  std::vector<int32_t> mask(shard_.end - shard_.begin);  // (shard) 1 where decay applies
  for (size_t k = 0; k < params.params().size(); ++k) {
    const Param& p = params.params()[k];
    const int64_t begin = std::max(p.offset, shard_.begin);
    const int64_t end = std::min(p.offset + p.value.numel(), shard_.end);
    if (begin < end)
      std::fill(mask.begin() + (begin - shard_.begin), mask.begin() + (end - shard_.begin),
                decay_[k]);
  }
  return Tensor::from_ints(mask, {static_cast<int64_t>(mask.size())}).to_device(device);
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

void AdamW::step(ParameterSet& params, double lr, double grad_scale) {
  SINKLAB_CHECK(m_.device() == params.flat_values().device(), ValueError,
                "AdamW::step: moments on " << m_.device().str() << ", parameters on "
                                           << params.flat_values().device().str(),
                "AdamW::on_host holds state for checkpoints; step the trainer's AdamW");
  ++t_;
  const auto [bias1, bias2] = bias_corrections(t_);
  const int64_t n = shard_.end - shard_.begin;
  Tensor w = params.flat_values().narrow_view(0, shard_.begin, n);  // (shard) views
  Tensor g = params.flat_grads().narrow_view(0, shard_.begin, n);
  const ops::AdamWHyper h{lr,    optim_.beta1, optim_.beta2, optim_.eps, optim_.weight_decay,
                          bias1, bias2,        static_cast<float>(grad_scale)};
  ops::adamw_update(w, g, m_, v_, decay_mask_, h);
}

std::pair<float, float> AdamW::bias_corrections(int64_t t) const {
  const double steps = static_cast<double>(t);
  return {static_cast<float>(1.0 - std::pow(optim_.beta1, steps)),
          static_cast<float>(1.0 - std::pow(optim_.beta2, steps))};
}

void AdamW::write_schedule(double lr) {
  const auto [bias1, bias2] = bias_corrections(t_ + 1);
  const Tensor host = Tensor::from_doubles({lr, bias1, bias2}, {3}, DType::F32);  // (3)
  if (!schedule_.defined()) schedule_ = Tensor::empty({3}, DType::F32, m_.device());
  schedule_.copy_from(host);
}

void AdamW::queue_scheduled_step(ParameterSet& params, const Tensor& results, double max_norm) {
  SINKLAB_CHECK(!sharded() && schedule_.defined() && m_.device() == params.flat_values().device(),
                ValueError,
                "AdamW::queue_scheduled_step: " << (sharded() ? "a ZeRO-1 shard" : "")
                                                << (schedule_.defined() ? "" : " no schedule"),
                "call write_schedule first, on the trainer's whole (unsharded) AdamW");
  Tensor w = params.flat_values(), g = params.flat_grads();  // (n) each
  const ops::AdamWConstants c{optim_.beta1, optim_.beta2, optim_.eps, optim_.weight_decay,
                              max_norm};
  ops::adamw_update_scheduled(w, g, m_, v_, decay_mask_, c, schedule_, results);
}

}  // namespace sinklab::train
