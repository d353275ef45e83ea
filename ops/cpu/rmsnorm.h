// CPU reference kernels for rmsnorm and headwise_rmsnorm (one computation, see ops/rmsnorm.h).
// Contiguous x (..., D) viewed as (rows, D); gain (P) or undefined, P a multiple of D and a
// divisor of x.numel(); row r uses gain[(r * D) % P, + D). rstd (rows). Sums in double.
#pragma once
#include "core/tensor.h"
#include "ops/rmsnorm.h"

namespace sinklab::cpu {

// stats (or null): row_statistics of x's rows and of y's, after the norm (ops/rmsnorm.h).
void rmsnorm_forward(const Tensor& x, const Tensor& gain, double eps, Tensor& y, Tensor& rstd,
                     ops::NormRowStatistics* stats = nullptr);
// sum = x + delta (in the dtype), then rmsnorm_forward of sum.
void add_rmsnorm_forward(const Tensor& x, const Tensor& delta, const Tensor& gain, double eps,
                         Tensor& sum, Tensor& y, Tensor& rstd);
// Per row, with r = rstd and g = gain * dy: dx = r * g - (r^3 / D) * x * sum_d(x_d g_d).
// dgain[p] = sum over the rows that use p of dy * x * r, in row order (deterministic).
void rmsnorm_backward(const Tensor& grad, const Tensor& x, const Tensor& gain,
                      const Tensor& rstd, const Tensor* residual, Tensor* grad_x,
                      Tensor* grad_x_operand, Tensor* grad_gain);

}  // namespace sinklab::cpu
