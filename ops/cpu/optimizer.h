// CPU reference kernels of the optimizer's ops (ops/optimizer.h), element by element in f32;
// the sum of squares accumulates in double over fixed chunks, summed in chunk order.
#pragma once
#include "core/tensor.h"
#include "ops/optimizer.h"

namespace sinklab::cpu {

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
// w -= lr (m / bc1) / (sqrt(v / bc2) + eps) + wd w,  wd = lr * weight_decay where the mask is 1.
void adamw_update(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                  const ops::AdamWHyper& h);
double sum_of_squares(const Tensor& x);
void scale_in_place(Tensor& x, float factor);
// out[0] = sum_of_squares(x).
void sum_of_squares_into(const Tensor& x, Tensor& out);
// Reads the schedule and the results (ops/optimizer.h), returns without a write where the loss
// or the norm is not finite, else adamw_update with the hyper-parameters they give.
void adamw_update_scheduled(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                            const Tensor& decay_mask, const ops::AdamWConstants& c,
                            const Tensor& schedule, const Tensor& results);

}  // namespace sinklab::cpu
