// CPU reference kernels for causal attention (softmax or sigmoid, with isolated positions).
// Written as the oracle the CUDA flash-attention kernel is tested against: one (batch, head) pair
// per task. Forward and backward are written as products over tiles of queries (through
// cpu::selected_gemm, OpenBLAS or the own kernel) in the inputs' dtype, with the softmax sums
// and D_t = dO_t . O_t in double; probabilities and key mass are direct sums in double.
// All tensors contiguous; q, k, v, out, dq, dk, dv (B, T, NH, HS); lse (B, NH, T).
#pragma once
#include "core/tensor.h"
#include "ops/attention.h"

namespace sinklab::cpu {

// out (B, T, NH, HS); lse (B, NH, T) written in softmax mode, untouched (may be undefined) in
// sigmoid mode.
// operands stays empty (the CPU reads q, k, v as they are).
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                       const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                       ops::AttentionOperands& operands);

// Flash-style backward: probabilities recomputed from q, k and lse (softmax) or from q, k
// (sigmoid); out is used for D_t = dO_t . O_t (softmax only).
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& grad_out,
                        const ops::AttentionParams& params, const ops::AttentionOperands& operands,
                        Tensor& dq, Tensor& dk, Tensor& dv);

// probs (B, NH, T, T): A[b, h, t, j], zero where j is not visible from t.
void attention_probabilities(const Tensor& q, const Tensor& k, const ops::AttentionParams& params,
                             Tensor& probs);

// mass (B, NH, T): A[b, h, t, key] from the saved lse (softmax) or recomputed (sigmoid).
void attention_key_mass(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t key,
                        const ops::AttentionParams& params, Tensor& mass);

}  // namespace sinklab::cpu
