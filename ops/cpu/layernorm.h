// CPU reference kernels for layernorm. Contiguous x (..., C) viewed as (rows, C); weight (C);
// bias (C) or undefined; mean and rstd (rows). Row statistics accumulate in double.
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                       Tensor& y, Tensor& mean, Tensor& rstd);
// sum = x + delta (in the dtype), then layernorm_forward of sum.
void add_layernorm_forward(const Tensor& x, const Tensor& delta, const Tensor& weight,
                           const Tensor& bias, double eps, Tensor& sum, Tensor& y, Tensor& mean,
                           Tensor& rstd);
// With xhat = (x - mean) * rstd and g = weight * dy, per row:
//   dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat));
//   dweight = sum over rows of dy * xhat; dbias = sum over rows of dy (each in row order).
void layernorm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd, const Tensor* residual,
                        Tensor* grad_x, Tensor* grad_x_operand, Tensor* grad_weight,
                        Tensor* grad_bias);

}  // namespace sinklab::cpu
