// GPT-2's feed-forward block as one op, so that GELU rides the products' epilogues:
//   gelu_mlp(x, w_fc, b_fc, w_proj, b_proj) = linear(gelu(linear(x, w_fc, b_fc)), w_proj, b_proj)
//   x (..., C), w_fc (F, C), b_fc (F) or undefined, w_proj (C, F), b_proj (C) or undefined
//   -> y (..., C) in w_proj's dtype (or the operand dtype, `output`), and hidden (..., F) =
//   gelu(pre), pre = x w_fc^T + b_fc, as the metrics read it (detached: gradients flow only
//   through y).
// pre and hidden are stored in the products' operand dtype (bf16 under Precision::BF16 on a GPU,
// as autocast stores them: composed, GELU reads the rounded pre; in cuBLASLt's epilogue it
// reads the f32 sum before the rounding); gelu is the tanh approximation.
//
// Backward, from y's gradient g: w_proj's gradient g^T hidden, b_proj's the column sums of g,
// then grad_pre = gelu'(pre) (g w_proj) in one product (gelu_grad_product, with b_fc's gradient,
// the column sums of grad_pre), then w_fc's gradient grad_pre^T x and x's grad_pre w_fc. Weight
// gradients add in place into the parameters' gradient buffers (ops/matmul.h's WeightGradSink).
//
// Two kernel rows, each "fused" (their gradients run through other rows):
//   gelu_linear:       x (1, rows, C), w (1, F, C) operands, bias (F) or undefined ->
//                      pre (1, rows, F) = x w^T + bias and hidden = gelu(pre), both in pre's
//                      dtype. CUDA: one cuBLASLt product with the GELU_AUX_BIAS epilogue (hidden
//                      is D, pre the aux output) where cuBLASLt has it for a bf16 pre.
//   gelu_grad_product: g (1, rows, C), w (1, C, F) operands, pre (1, rows, F) ->
//                      grad_pre (1, rows, F) = gelu'(pre) (g w), in pre's dtype, and, when
//                      asked, grad_bias (F) = its column sums (f32 for a bf16 pre, else pre's
//                      dtype). CUDA: one product with the DGELU_BGRAD epilogue.
//   Their CPU rows (and the CUDA rows' fallback) compose the rows of linear, matmul and
//   bias_gelu (with a zero bias) on the tensors' device: gelu_linear_composed and
//   gelu_grad_product_composed.
// The epilogue paths are taken only as ops::gemm_epilogues (ops/matmul.h) allows.
#pragma once
#include "core/tensor.h"
#include "ops/matmul.h"
#include "ops/op_table.h"

namespace sinklab::ops {

struct GeluMlp {
  Tensor y;       // (..., C)
  Tensor hidden;  // (..., F) gelu(pre), detached
};

// output: y in w_proj's dtype (kWeightDType), or in the products' operand dtype
// (kOperandDType: bf16 under Precision::BF16 on a GPU, as autocast stores it; ops::linear's).
GeluMlp gelu_mlp(const Tensor& x, const Tensor& w_fc, const Tensor& b_fc, const Tensor& w_proj,
                 const Tensor& b_proj, LinearOutput output = LinearOutput::kWeightDType);

using GeluLinearFn = void (*)(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& pre,
                              Tensor& hidden);
using GeluGradProductFn = void (*)(const Tensor& g, const Tensor& w, const Tensor& pre,
                                   Tensor& grad_pre, Tensor* grad_bias);
extern OpKernels<GeluLinearFn, GeluLinearFn> gelu_linear_kernels;
extern OpKernels<GeluGradProductFn, GeluGradProductFn> gelu_grad_product_kernels;

// The rows composed from linear, matmul and bias_gelu's rows on the tensors' device.
void gelu_linear_composed(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& pre,
                          Tensor& hidden);
void gelu_grad_product_composed(const Tensor& g, const Tensor& w, const Tensor& pre,
                                Tensor& grad_pre, Tensor* grad_bias);

}  // namespace sinklab::ops
