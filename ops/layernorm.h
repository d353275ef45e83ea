// Layer normalisation over the last dim (GPT-2 blocks):
//   layernorm(x, weight, bias, eps): x (..., C), weight (C), bias (C) or undefined (no bias)
//     y = (x - mean_c(x)) * rsqrt(var_c(x) + eps) * weight + bias   (biased variance)
#pragma once
#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/add_norm.h"
#include "ops/op_table.h"

namespace sinklab::ops {

// Whether a GPU's LayerNorm backward sums the weight's and bias's gradients, and its RMSNorm
// and head-wise RMSNorm backward the gain's (where a warp's rows use distinct slices of it), in
// the kernel that reads dy and x for x's gradient (run.fused_norm_param_grads: per-block
// partials, then the column sums' finish), instead of in column sums of their own that read dy
// and x again. The same sums in another fixed order. Read at each call; the trainer sets it once from the config.
// On by default: 1.3 to 2.1% faster on an H100 (nineteenth session, docs/PERFORMANCE.md).
extern bool fused_norm_param_grads;

// Norm backwards (LayerNorm, RMSNorm) whose parameter gradients were summed in the x-gradient
// pass, since the process started (for tests; counted by the GPU's backward).
int64_t norm_param_grads_fused();
void count_norm_param_grads_fused();

// Sets fused_norm_param_grads for a scope (tests, benchmarks).
class FusedNormParamGradsGuard : ScopedValue<bool> {
 public:
  explicit FusedNormParamGradsGuard(bool on) : ScopedValue(fused_norm_param_grads, on) {}
};

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5,
                 NormOutput output = NormOutput::kInputDType);
// {x + delta, layernorm(x + delta)} in one pass (ops/add_norm.h).
AddNorm add_layernorm(const Tensor& x, const Tensor& delta, const Tensor& weight,
                      const Tensor& bias, double eps = 1e-5,
                      NormOutput output = NormOutput::kInputDType);

// Forward writes y (..., C) and the per-row statistics mean, rstd (rows) that backward reuses.
// y is x's dtype, or bf16 (CUDA, f32 x) for NormOutput::kOperandDType; the backward's grad then
// comes in y's dtype.
using LayerNormForwardFn = void (*)(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    double eps, Tensor& y, Tensor& mean, Tensor& rstd);
// Backward fills the gradients whose pointer is non-null; with residual (x's shape and dtype),
// grad_x is residual + the norm's gradient, added in the same pass (fold_residual_grads);
// grad_x_operand (x's shape, bf16; an f32 grad_x only): grad_x rounded to nearest even as well,
// the copy the products that read this gradient take (ops::remember_operand).
using LayerNormBackwardFn = void (*)(const Tensor& grad, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd,
                                     const Tensor* residual, Tensor* grad_x,
                                     Tensor* grad_x_operand, Tensor* grad_weight,
                                     Tensor* grad_bias);
extern OpKernels<LayerNormForwardFn, LayerNormBackwardFn> layernorm_kernels;
// add_layernorm's forward: sum = x + delta (..., C), then layernorm's outputs for sum. Its
// backward is add's and layernorm's (the slot stays null).
using AddLayerNormForwardFn = void (*)(const Tensor& x, const Tensor& delta, const Tensor& weight,
                                       const Tensor& bias, double eps, Tensor& sum, Tensor& y,
                                       Tensor& mean, Tensor& rstd);
extern OpKernels<AddLayerNormForwardFn, AddLayerNormForwardFn> add_layernorm_kernels;

}  // namespace sinklab::ops
