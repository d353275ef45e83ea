// The optimizer's ops over flat f32 buffers, outside autograd: one AdamW update for every
// parameter of a (shard of a) flat buffer, the deterministic sum of squares behind the global
// grad norm, and in-place scaling for clipping; and the two that a recorded step queues without
// reading anything back (run.cuda_graph, train/step_graph.h): the sum of squares into a device
// buffer, and the AdamW update whose learning rate, bias corrections, clipping factor and skip
// come from device buffers. Each is one UpdateKernels row: the CPU twin in ops/cpu/optimizer.h,
// the CUDA kernel in cuda/optimizer.cu.
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;  // as configured (lr: this step's)
  float bias_correction1, bias_correction2;    // 1 - beta1^t, 1 - beta2^t
  float grad_scale = 1.0f;  // each gradient is read as f32(g * grad_scale): gradient clipping's
                            // factor applied in this pass (as scale_in_place would, bit for bit)
};

// w, g, m, v: (n) f32; decay_mask: (n) i32, 1 where weight decay applies. All on one device,
// contiguous. Updates w, m and v in place; g is read (times h.grad_scale), never written.
void adamw_update(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                  const AdamWHyper& h);
// The factor that clips gradients of global norm `norm` to max_norm: max_norm / (norm + 1e-6)
// when norm > max_norm > 0, else 1 (train/optimizer.h's clip_factor; the scheduled update's CPU
// twin; cuda/optimizer.cu's kernel computes the same on the device).
double clip_factor(double norm, double max_norm);
// sum(x^2) of an f32 tensor, accumulated in double in a fixed order: the same on every run.
double sum_of_squares(const Tensor& x);
// out (1) f64 on x's device = sum_of_squares(x), the same bits, left on the device.
void sum_of_squares_into(const Tensor& x, Tensor& out);

// What a scheduled AdamW update takes from the config (the rest comes from device buffers).
struct AdamWConstants {
  double beta1, beta2, eps, weight_decay;
  double max_norm;  // gradient clipping's max norm (0 = off)
};
// adamw_update with this step's hyper-parameters read on the device:
//   schedule (3) f32: the learning rate, 1 - beta1^t and 1 - beta2^t;
//   results (2) f64: the step's loss (summed over its micro-batches) and the gradients' sum of
//   squares (sum_of_squares_into).
// Nothing is updated when either result is not finite (the trainer's skipped step); otherwise
// each gradient is read as f32(g * f32(factor)), factor = max_norm / (sqrt(sum) + 1e-6) where
// sqrt(sum) > max_norm > 0, else 1: the bits adamw_update gives with the same numbers from the
// host (train/optimizer.h's clip_factor).
void adamw_update_scheduled(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                            const Tensor& decay_mask, const AdamWConstants& c,
                            const Tensor& schedule, const Tensor& results);
// x *= factor (rounded to f32), in place.
void scale_in_place(Tensor& x, double factor);

using AdamWUpdateFn = void (*)(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                               const Tensor& decay_mask, const AdamWHyper& h);
using SumOfSquaresFn = double (*)(const Tensor& x);
using ScaleInPlaceFn = void (*)(Tensor& x, float factor);
using SumOfSquaresIntoFn = void (*)(const Tensor& x, Tensor& out);
using AdamWUpdateScheduledFn = void (*)(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                                        const Tensor& decay_mask, const AdamWConstants& c,
                                        const Tensor& schedule, const Tensor& results);
extern UpdateKernels<AdamWUpdateFn> adamw_update_kernels;
extern UpdateKernels<SumOfSquaresFn> sum_of_squares_kernels;
extern UpdateKernels<ScaleInPlaceFn> scale_in_place_kernels;
extern UpdateKernels<SumOfSquaresIntoFn> sum_of_squares_into_kernels;
extern UpdateKernels<AdamWUpdateScheduledFn> adamw_update_scheduled_kernels;

}  // namespace sinklab::ops
