// Optimizer kernels over the flat parameter buffers: one AdamW kernel for every parameter,
// a deterministic global sum of squares (grad norm), and in-place scaling (clipping).
// Host-side declarations only, so train/ includes this without CUDA headers.
#pragma once
#include "core/tensor.h"

namespace sinklab::cuda {

struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
};

// w, g, m, v: (numel,) f32 on the device; decay_mask: (numel,) i32, 1 where weight decay applies.
void adamw_step(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                const AdamWHyper& h);
// sum(x^2) accumulated in double over a fixed grid: the same result on every run.
double sum_of_squares(const Tensor& x);
void scale_in_place(Tensor& x, float factor);

}  // namespace sinklab::cuda
