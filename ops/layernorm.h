// Layer normalisation over the last dim (GPT-2 blocks):
//   layernorm(x, weight, bias, eps): x (..., C), weight (C), bias (C) or undefined (no bias)
//     y = (x - mean_c(x)) * rsqrt(var_c(x) + eps) * weight + bias   (biased variance)
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// Forward writes y (..., C) and the per-row statistics mean, rstd (rows) that backward reuses.
using LayerNormForwardFn = void (*)(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    double eps, Tensor& y, Tensor& mean, Tensor& rstd);
// Backward fills the gradients whose pointer is non-null.
using LayerNormBackwardFn = void (*)(const Tensor& grad, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd, Tensor* grad_x,
                                     Tensor* grad_weight, Tensor* grad_bias);
extern OpKernels<LayerNormForwardFn, LayerNormBackwardFn> layernorm_kernels;

}  // namespace sinklab::ops
