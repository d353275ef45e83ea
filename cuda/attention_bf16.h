// Internal to cuda/: the tensor-core (bf16 operands, fp32 accumulation) causal flash attention
// for f32 tensors, defined in cuda/attention_bf16.cu and called by the f32 launchers of
// cuda/attention.cu. Each launcher returns false, launching nothing, when the case is not one it
// handles (not f32, cuda_precision() != Precision::BF16, HS not 64 or 128, a device without bf16
// mma (sm_80+), an operand not 16-byte aligned, too many query tiles); the caller then runs its
// exact kernels.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/attention.h"

namespace sinklab::cuda {

// q, k, v, out: f32 (B, T, NH, HS) contiguous; lse: f32 (B, NH, T) (softmax only: undefined in
// sigmoid mode); first_key: the device copy (int32 (T)) of params.first_key. operands receives
// the bf16 copies of q, k, v it multiplied.
bool attention_forward_bf16(const Tensor& q, const Tensor& k, const Tensor& v,
                            const ops::AttentionParams& params, const int32_t* first_key,
                            Tensor& out, Tensor& lse, ops::AttentionOperands& operands);

// grad_out, dq, dk, dv: f32 (B, T, NH, HS) contiguous; lse and dvec (D_t = dO_t . O_t): f32
// (B, NH, T), softmax only (ignored, and may be undefined, in sigmoid mode). operands: the
// forward's bf16 copies of q, k, v, read instead of rounding q, k, v again (empty: rounded here).
bool attention_backward_bf16(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& grad_out, const Tensor& lse, const Tensor& dvec,
                             const ops::AttentionParams& params,
                             const ops::AttentionOperands& operands, const int32_t* first_key,
                             Tensor& dq, Tensor& dk, Tensor& dv);

// ops::attention_qkv's tensor-core path: qkv (B, T, 3C) bf16 (q, k, v at column offsets 0, C,
// 2C of each row) read where it lies, out f32 (B, T, NH, HS) and lse as above; the backward
// writes dqkv (B, T, 3C) bf16, dvec as above, grad_out f32 (B, T, NH, HS) contiguous. False
// (nothing launched) where it does not apply: not bf16, HS not 64 or 128, C not a multiple of
// 8, a misaligned base, a device without bf16 mma or the shared memory.
bool attention_qkv_forward_bf16(const Tensor& qkv, const ops::AttentionParams& params,
                                const int32_t* first_key, Tensor& out, Tensor& lse);
bool attention_qkv_backward_bf16(const Tensor& qkv, const Tensor& grad_out, const Tensor& lse,
                                 const Tensor& dvec, const ops::AttentionParams& params,
                                 const int32_t* first_key, Tensor& dqkv);

}  // namespace sinklab::cuda
