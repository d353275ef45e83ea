// RMS normalisation over the last dim: no mean subtraction, no bias.
//   rmsnorm(x, weight, eps): x (..., C), weight (C) or undefined (no gain)
//     y = x * rsqrt(mean_c(x^2) + eps) * weight                      (LLaMA-style blocks)
//   headwise_rmsnorm(x, gamma, eps): x (..., NH, HS), the attention output before W_O, e.g.
//     (B, T, NH, HS); gamma (NH, HS) per head or (HS) shared by all heads
//     y[..., h, :] = x[..., h, :] * rsqrt(mean_i(x[..., h, i]^2) + eps) * gamma[h, :]
//     (RMS over HS only; docs/SINKS.md, "headwise_rmsnorm").
// Both are one computation: contiguous rows of length D (C, or HS) and a gain of P elements
// (P a multiple of D) repeating along the flattened x, so row r uses gain[(r * D) % P, + D).
// They share one kernel pair; each op keeps its own row for its name and CUDA slots.
#pragma once
#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/add_norm.h"
#include "ops/op_table.h"

namespace sinklab::ops {

// The row statistics (ops/statistics.h's five columns: mean, variance, l2 norm, mean |.|,
// max |.|) of every row of a norm's input and of its output as stored, (rows, 5) each in the
// norm's math dtype (f32 for a bf16 x), from the forward's own pass where the device's kernel
// can (head-wise RMSNorm's grouped rows on a GPU), otherwise from row_statistics after it. The
// sink metrics take the attention output's variance by position from them instead of reading
// o and its norm again (train/metrics/sink_metrics.h).
struct NormRowStatistics {
  Tensor input;   // (rows, 5) of x
  Tensor output;  // (rows, 5) of y
};

// Whether the model asks head-wise RMSNorm for its NormRowStatistics on a metrics forward
// (run.head_norm_statistics), so that the sink metrics take the attention output's variance by
// position from them. Read at each forward; the trainer sets it once from the config. Off by
// default: on an H100 the grouped kernel took 79 us a GPT-2 layer with them against 54, about
// what the two row_statistics passes it replaces cost (eighteenth session, docs/PERFORMANCE.md).
extern bool head_norm_statistics;

// Sets head_norm_statistics for a scope (tests, benchmarks).
class HeadNormStatisticsGuard : ScopedValue<bool> {
 public:
  explicit HeadNormStatisticsGuard(bool on) : ScopedValue(head_norm_statistics, on) {}
};

// output: y's dtype (ops/add_norm.h): x's, or bf16 for NormOutput::kOperandDType on a GPU under
// Precision::BF16 with an f32 x; y's gradient then comes back in bf16 and x's in x's dtype.
// rmsnorm and headwise_rmsnorm also take a bf16 x on a GPU (cuDNN's attention output) with an
// f32 gain: f32 math, y and x's gradient bf16, rstd f32.
Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps = 1e-6,
               NormOutput output = NormOutput::kInputDType);
// stats: when given, filled with each head's row statistics of x and y (rows = numel / HS).
Tensor headwise_rmsnorm(const Tensor& x, const Tensor& gamma, double eps = 1e-6,
                        NormOutput output = NormOutput::kInputDType,
                        NormRowStatistics* stats = nullptr);
// {x + delta, rmsnorm(x + delta)} in one pass (ops/add_norm.h); output sets normed's dtype, the
// sum stays in x's dtype.
AddNorm add_rmsnorm(const Tensor& x, const Tensor& delta, const Tensor& weight, double eps = 1e-6,
                    NormOutput output = NormOutput::kInputDType);

// Forward: x (..., D), gain (P) or undefined -> y (..., D) and rstd (rows), rows = numel / D.
// y is x's dtype, or bf16 (CUDA, f32 x) for NormOutput::kOperandDType; rstd is x's dtype (f32
// for a bf16 x). The backward's grad then comes in y's dtype; grad_x and grad_gain are x's (and
// gain's) dtype. stats, when non-null, holds two allocated (rows, 5) tensors in rstd's dtype to
// fill (NormRowStatistics).
using RmsNormForwardFn = void (*)(const Tensor& x, const Tensor& gain, double eps, Tensor& y,
                                  Tensor& rstd, NormRowStatistics* stats);
// Backward fills the gradients whose pointer is non-null (grad_gain has gain's shape); with
// residual (x's shape, f32 or f64 x), grad_x is residual + the norm's gradient, added in the same
// pass (fold_residual_grads); grad_x_operand (x's shape, bf16; an f32 grad_x only): grad_x rounded
// to nearest even as well, the copy the products that read this gradient take
// (ops::remember_operand).
using RmsNormBackwardFn = void (*)(const Tensor& grad, const Tensor& x, const Tensor& gain,
                                   const Tensor& rstd, const Tensor* residual, Tensor* grad_x,
                                   Tensor* grad_x_operand, Tensor* grad_gain);
extern OpKernels<RmsNormForwardFn, RmsNormBackwardFn> rmsnorm_kernels;
extern OpKernels<RmsNormForwardFn, RmsNormBackwardFn> headwise_rmsnorm_kernels;
// add_rmsnorm's forward: sum = x + delta (..., D), then rmsnorm's outputs for sum. Its backward
// is add's and rmsnorm's (the slot stays null).
using AddRmsNormForwardFn = void (*)(const Tensor& x, const Tensor& delta, const Tensor& gain,
                                     double eps, Tensor& sum, Tensor& y, Tensor& rstd);
extern OpKernels<AddRmsNormForwardFn, AddRmsNormForwardFn> add_rmsnorm_kernels;

}  // namespace sinklab::ops
