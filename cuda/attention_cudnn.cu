// ops::attention and ops::attention_qkv on cuDNN's fused attention: the bf16 views cuDNN reads,
// the bf16 outputs it writes, widened to the f32 tensors the ops hand out.
#include "cuda/attention_cudnn.h"

#include <cuda_bf16.h>

#include <algorithm>

#include "core/precision.h"
#include "cuda/check.h"
#include "cuda/cudnn_attention.h"
#include "cuda/runtime.h"
#include "ops/matmul.h"

namespace sinklab::cuda {
namespace {

// The preference, the options and the precision allow cuDNN: softmax under the plain causal mask
// (no isolated position), bf16 operands.
bool cudnn_wanted(const ops::AttentionParams& params) {
  return ops::attention_kernels_preference == ops::AttentionKernels::Auto && !params.sigmoid &&
         cuda_precision() == Precision::BF16 &&
         std::all_of(params.first_key.begin(), params.first_key.end(),
                     [](int64_t first) { return first == 0; });
}

// out (f32) = x16 (bf16), both contiguous with out's number of elements.
void widen_into(const Tensor& x16, Tensor& out) {
  convert_elements(x16.raw_data(), DType::BF16, out.raw_data(), DType::F32, out.numel());
}

// A bf16 copy of an f32 tensor (B, T, NH, HS), rounded to nearest even.
Tensor rounded(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), DType::BF16, x.device());  // x's shape, bf16
  ops::bf16_round_kernels.cuda_forward(x, out);
  return out;
}

// (B, H, T, D) views of separate (B, T, NH, HS) tensors (bf16 for cuDNN; f32 ones only to ask
// whether the shape applies: strides in elements are the same).
SdpaViews views_of(const Tensor& q16, const Tensor& k16, const Tensor& v16) {
  const int64_t B = q16.size(0), T = q16.size(1), H = q16.size(2), D = q16.size(3);
  SdpaViews in;
  in.q = q16.raw_data();
  in.k = k16.raw_data();
  in.v = v16.raw_data();
  in.B = B, in.H = H, in.T = T, in.D = D;
  const int64_t s[4] = {T * H * D, D, H * D, 1};
  std::copy(s, s + 4, in.strides);
  return in;
}

// (B, H, T, D) views of q, k, v inside a packed (B, T, 3C) bf16 qkv.
SdpaViews views_of_packed(const Tensor& qkv, int64_t H) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C3 = qkv.size(2), C = C3 / 3;
  const auto* p = static_cast<const __nv_bfloat16*>(qkv.raw_data());
  SdpaViews in;
  in.q = p;
  in.k = p + C;
  in.v = p + 2 * C;
  in.B = B, in.H = H, in.T = T, in.D = C / H;
  const int64_t s[4] = {T * C3, C / H, C3, 1};
  std::copy(s, s + 4, in.strides);
  return in;
}

}  // namespace

bool attention_forward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v,
                             const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                             ops::AttentionOperands& operands) {
  // The shape decides first (q's layout is its bf16 copies'): no rounding passes for nothing.
  if (!cudnn_wanted(params) || q.dtype() != DType::F32 ||
      !cudnn_attention_applies(views_of(q, k, v)))
    return false;
  const Tensor q16 = rounded(q), k16 = rounded(k), v16 = rounded(v);  // (B, T, NH, HS) bf16
  const SdpaViews in = views_of(q16, k16, v16);
  Tensor o16 = Tensor::empty(out.shape(), DType::BF16, out.device());  // (B, T, NH, HS)
  if (!cudnn_attention_forward(in, params.scale, o16.raw_data(), lse.data<float>())) return false;
  widen_into(o16, out);
  operands = {q16, k16, v16};
  return true;
}

bool attention_backward_cudnn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& lse, const Tensor& grad_out,
                              const ops::AttentionParams& params,
                              const ops::AttentionOperands& operands, Tensor& dq, Tensor& dk,
                              Tensor& dv) {
  if (!cudnn_wanted(params) || q.dtype() != DType::F32) return false;
  const bool kept = operands.q.defined() && operands.q.dtype() == DType::BF16;
  const Tensor q16 = kept ? operands.q : rounded(q);  // (B, T, NH, HS) bf16
  const Tensor k16 = kept ? operands.k : rounded(k);
  const Tensor v16 = kept ? operands.v : rounded(v);
  const SdpaViews in = views_of(q16, k16, v16);
  if (!cudnn_attention_applies(in)) return false;
  const Tensor o16 = rounded(out), g16 = rounded(grad_out);  // (B, T, NH, HS) bf16
  // bf16 (B, T, NH, HS) gradients, widened into dq, dk, dv
  Tensor dq16 = Tensor::empty(dq.shape(), DType::BF16, dq.device());
  Tensor dk16 = Tensor::empty(dk.shape(), DType::BF16, dk.device());
  Tensor dv16 = Tensor::empty(dv.shape(), DType::BF16, dv.device());
  if (!cudnn_attention_backward(in, params.scale, o16.raw_data(), g16.raw_data(),
                                lse.data<float>(), dq16.raw_data(), dk16.raw_data(),
                                dv16.raw_data(), in.strides, ops::deterministic_attention))
    return false;
  widen_into(dq16, dq);
  widen_into(dk16, dk);
  widen_into(dv16, dv);
  return true;
}

bool attention_qkv_cudnn_applies(const Tensor& qkv, int64_t H,
                                 const ops::AttentionParams& params) {
  return cudnn_wanted(params) && qkv.dtype() == DType::BF16 && qkv.dim() == 3 && H > 0 &&
         qkv.size(2) % (3 * H) == 0 && cudnn_attention_applies(views_of_packed(qkv, H));
}

bool attention_qkv_forward_cudnn(const Tensor& qkv, const ops::AttentionParams& params,
                                 Tensor& out, Tensor& lse) {
  const int64_t H = out.size(2);
  if (!attention_qkv_cudnn_applies(qkv, H, params)) return false;
  const SdpaViews in = views_of_packed(qkv, H);
  if (out.dtype() == DType::BF16)  // written where the op wants it
    return cudnn_attention_forward(in, params.scale, out.raw_data(), lse.data<float>());
  Tensor o16 = Tensor::empty(out.shape(), DType::BF16, out.device());  // (B, T, NH, HS)
  if (!cudnn_attention_forward(in, params.scale, o16.raw_data(), lse.data<float>())) return false;
  widen_into(o16, out);
  return true;
}

bool attention_qkv_backward_cudnn(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                  const Tensor& grad_out, const ops::AttentionParams& params,
                                  Tensor& dqkv) {
  const int64_t H = out.size(2);
  if (dqkv.dtype() != DType::BF16 ||
      !attention_qkv_cudnn_applies(qkv, H, params))
    return false;
  const SdpaViews in = views_of_packed(qkv, H);
  // out and its gradient as cuDNN reads them: bf16 (B, T, NH, HS), rounded only if f32
  const Tensor o16 = out.dtype() == DType::BF16 ? out : rounded(out);
  const Tensor g16 = grad_out.dtype() == DType::BF16 ? grad_out : rounded(grad_out);
  const SdpaViews grads = views_of_packed(dqkv, H);         // written in place in (B, T, 3C)
  return cudnn_attention_backward(in, params.scale, o16.raw_data(), g16.raw_data(),
                                  lse.data<float>(), const_cast<void*>(grads.q),
                                  const_cast<void*>(grads.k), const_cast<void*>(grads.v),
                                  grads.strides, ops::deterministic_attention);
}

}  // namespace sinklab::cuda
