// Internal to cuda/: ops::attention and ops::attention_qkv on cuDNN's fused attention
// (cuda/cudnn_attention.h), called first by their CUDA slots in cuda/attention.cu. Each returns
// false, launching nothing, where the cuDNN path does not apply: ops::attention_kernels_preference
// is Own, sigmoid attention or isolated positions, not bf16 operands under Precision::BF16, a
// shape or alignment the engine does not take, or no engine for the shape (told once).
#pragma once
#include "core/tensor.h"
#include "ops/attention.h"

namespace sinklab::cuda {

// q, k, v, out: f32 (B, T, NH, HS) contiguous; lse: f32 (B, NH, T). operands receives the bf16
// copies of q, k, v (and the backward reads them).
bool attention_forward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v,
                             const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                             ops::AttentionOperands& operands);
// grad_out, dq, dk, dv: f32 (B, T, NH, HS) contiguous, written.
bool attention_backward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, const Tensor& grad_out,
                              const ops::AttentionParams& params,
                              const ops::AttentionOperands& operands, Tensor& dq, Tensor& dk,
                              Tensor& dv);
// Whether attention_qkv's cuDNN path takes this qkv (bf16 (B, T, 3C), H heads) under params:
// ops::attention_qkv_fused_bf16, so that the op allocates its out in bf16.
bool attention_qkv_cudnn_applies(const Tensor& qkv, int64_t H, const ops::AttentionParams& params);
// qkv: bf16 (B, T, 3C) read where q, k, v lie; out (B, T, NH, HS) bf16 (written in place) or f32
// (widened); grad_out bf16 or f32 (rounded); dqkv bf16 (B, T, 3C).
bool attention_qkv_forward_cudnn(const Tensor& qkv, const ops::AttentionParams& params,
                                 Tensor& out, Tensor& lse);
bool attention_qkv_backward_cudnn(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                  const Tensor& grad_out, const ops::AttentionParams& params,
                                  Tensor& dqkv);

}  // namespace sinklab::cuda
