// Internal to cuda/: causal softmax attention on cuDNN's fused flash-attention engine (graph API,
// bf16 operands, fp32 softmax and accumulation), forward with its log-sum-exp and a
// deterministic backward. cuda/attention.cu calls it where the options allow (softmax, the plain
// causal mask, no isolated positions) and ops::attention_kernels_preference says Auto; its own
// kernels run everywhere else and stay the CPU-checked reference.
//
// The forward graph is cuDNN's composite SDPA pattern: S = Q K^T * scale, the causal mask
// (row >= column kept, -inf elsewhere), M = rowmax S, Z = sum exp(S - M), Stats = M + log Z
// (our lse), P = exp(S - M) / Z in bf16, O = P V. The backward recomputes P = exp(S - Stats)
// and forms dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO * O)) * scale, dK = dS^T Q and
// dQ = dS K. By default dQ is written by the product itself through a dP workspace (cuDNN's
// deterministic algorithm on Hopper), not accumulated with atomics, so two runs give the same
// bits; ops::deterministic_attention = false (run.deterministic) takes the atomic one.
#pragma once
#include <cstdint>
#include <string>

namespace sinklab::cuda {

// Strided bf16 views (B, H, T, D) of q, k and v in one layout: element strides of b, h, t, d
// (the packed GPT-2 qkv (B, T, 3C): T*3C, D, 3C, 1; separate (B, T, H, D) tensors: T*H*D, D,
// H*D, 1).
struct SdpaViews {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t B = 0, H = 0, T = 0, D = 0;
  int64_t strides[4] = {0, 0, 0, 0};
};

// Whether cuDNN attention was built in (CMake found cuDNN).
bool cudnn_attention_built();
// "cuDNN 9.14.0 fused attention for causal softmax, ..." or why it is not used.
std::string cudnn_attention_description();

// Whether the shapes suit the engine (D a multiple of 8 up to 128, 16-byte aligned bases and
// strides). The caller checks the options (softmax, plain causal mask).
bool cudnn_attention_applies(const SdpaViews& views);

// o: bf16 (B, T, H, D) contiguous; lse: f32 (B, H, T). False, with nothing written, where no
// cuDNN engine takes the graph (told once on stderr): the caller then runs its own kernels.
bool cudnn_attention_forward(const SdpaViews& in, double scale, void* o, float* lse);

// o, grad_out: bf16 (B, T, H, D) contiguous (the forward's output and its gradient); lse as the
// forward wrote it; dq, dk, dv: bf16 views (B, H, T, D) with element strides grad_strides
// (b, h, t, d), written (not accumulated). deterministic: the graph above; false: dQ summed over
// key tiles with f32 atomics inside the main kernel (run.deterministic: false; no dP workspace
// and no product of its own, but the bits of dQ may differ between runs). False as above.
bool cudnn_attention_backward(const SdpaViews& in, double scale, const void* o,
                              const void* grad_out, const float* lse, void* dq, void* dk,
                              void* dv, const int64_t grad_strides[4], bool deterministic);

}  // namespace sinklab::cuda
