// The optimizer's ops over flat f32 buffers, outside autograd: one AdamW update for every
// parameter of a (shard of a) flat buffer, the deterministic sum of squares behind the global
// grad norm, and in-place scaling for clipping. Each is one UpdateKernels row: the CPU twin in
// ops/cpu/optimizer.h, the CUDA kernel in cuda/optimizer.cu.
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
// sum(x^2) of an f32 tensor, accumulated in double in a fixed order: the same on every run.
double sum_of_squares(const Tensor& x);
// x *= factor (rounded to f32), in place.
void scale_in_place(Tensor& x, double factor);

using AdamWUpdateFn = void (*)(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                               const Tensor& decay_mask, const AdamWHyper& h);
using SumOfSquaresFn = double (*)(const Tensor& x);
using ScaleInPlaceFn = void (*)(Tensor& x, float factor);
extern UpdateKernels<AdamWUpdateFn> adamw_update_kernels;
extern UpdateKernels<SumOfSquaresFn> sum_of_squares_kernels;
extern UpdateKernels<ScaleInPlaceFn> scale_in_place_kernels;

}  // namespace sinklab::ops
