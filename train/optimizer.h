// AdamW with decoupled weight decay over a ParameterSet's flat buffers, the warm-up + cosine
// learning-rate schedule, and global-norm gradient clipping.
#pragma once
#include <cstdint>
#include <utility>

#include "train/config.h"
#include "train/parameters.h"

namespace sinklab::train {

// Linear warm-up from lr/warmup to lr over warmup_steps, then cosine from lr to min_lr at
// decay_steps (train.steps when 0), then min_lr.
double learning_rate(const OptimSection& optim, int64_t total_steps, int64_t step);

// sqrt(sum of squares) of the flat gradient buffer, accumulated in double in a fixed order.
double global_grad_norm(const ParameterSet& params);
// Scales every gradient by max_norm / norm when norm > max_norm (max_norm 0 = off).
// The factor that clips gradients of global norm `norm` to max_norm: max_norm / (norm + 1e-6)
// when norm > max_norm > 0, else 1. The trainer hands it to AdamW::step, which applies it as it
// reads each gradient (no pass of its own).
double clip_factor(double norm, double max_norm);
// Scales the gradients by clip_factor in place. Returns the factor applied (1 when not clipped).
double clip_gradients(ParameterSet& params, double norm, double max_norm);

// The elements [begin, end) of the flat buffers whose moments an AdamW holds and updates: all
// of them, or under ZeRO-1 one data-parallel rank's shard (end = -1: to the last element).
struct Shard {
  int64_t begin = 0, end = -1;
};

class AdamW {
 public:
  AdamW(const ParameterSet& params, const OptimSection& optim, Shard shard = {});
  // Whole moments (zeros) on the host whatever the parameters' device, for moving optimizer
  // state between checkpoints and sharded optimizers; it is not meant to step.
  static AdamW on_host(const ParameterSet& params, const OptimSection& optim);
  // One update with learning rate lr of the shard's elements: m, v moments; weight decay
  // lr*wd*w on decayed params. Elements outside the shard are left as they are.
  // grad_scale: clip_factor's, applied to each gradient as it is read (the gradients are left
  // as they are).
  void step(ParameterSet& params, double lr, double grad_scale = 1.0);
  // The update of a recorded step (run.cuda_graph, train/step_graph.h), queued without reading
  // anything back. write_schedule(lr) copies this step's learning rate and bias corrections (for
  // steps_taken() + 1) into a device buffer before each replay; the queued update reads them and
  // `results` ((2) f64: the step's loss summed over its micro-batches, the gradients' sum of
  // squares) when it runs, clips by max_norm and skips itself where either is not finite
  // (ops::adamw_update_scheduled): step()'s bits on a GPU. count_step() after a step that was
  // not skipped. Whole moments only (no ZeRO-1 shard).
  void write_schedule(double lr);
  void queue_scheduled_step(ParameterSet& params, const Tensor& results, double max_norm);
  void count_step() { ++t_; }
  int64_t steps_taken() const { return t_; }
  const Shard& shard() const { return shard_; }  // end resolved to the element count
  bool sharded() const { return shard_.begin != 0 || shard_.end != numel_; }
  Tensor& m() { return m_; }  // (shard size,) first moments, flat
  Tensor& v() { return v_; }  // (shard size,) second moments, flat
  const Tensor& m() const { return m_; }  // read-only, for checkpoints
  const Tensor& v() const { return v_; }
  void set_steps_taken(int64_t t) { t_ = t; }
  // Whether weight decay applies to a parameter under this config.
  static bool decays(const ParamSpec& spec, const OptimSection& optim);

 private:
  AdamW() = default;
  // (shard size,) i32 on `device`: decay_ spread over the shard's elements.
  Tensor decay_mask(const ParameterSet& params, Device device) const;
  OptimSection optim_;
  Shard shard_;
  int64_t numel_ = 0;        // of the whole flat buffers
  Tensor m_, v_;             // (shard size,) each, fp32
  std::vector<char> decay_;  // per parameter
  Tensor decay_mask_;        // (shard size,) i32 beside the moments: 1 where decay applies
  Tensor schedule_;          // (3) f32 beside the moments: lr, 1 - beta1^t, 1 - beta2^t
  int64_t t_ = 0;
  // 1 - beta1^t and 1 - beta2^t in f32, as every update reads them.
  std::pair<float, float> bias_corrections(int64_t t) const;
};

}  // namespace sinklab::train
