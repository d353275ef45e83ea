// Element types a CUDA kernel may read and write (f32, f64 and, as a storage format, bf16), the
// type each one computes in (bf16 values are widened to f32 for arithmetic and rounded to
// nearest even when stored), and the 16-byte row pack the row kernels move them in. Shared by
// the kernels that take bf16 activations (cross-entropy's logits, bias_gelu, swiglu, rope_qkv,
// the statistics probes).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>

#include "core/dispatch.h"
#include "cuda/runtime.h"  // aligned16

namespace sinklab::cuda {

// The accumulation type of a storage type: bf16 is summed in f32.
template <class S> struct AccumulateIn { using type = S; };
template <> struct AccumulateIn<__nv_bfloat16> { using type = float; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class S, class A>
__device__ __forceinline__ S from_acc(A x) {  // bf16: rounded to nearest even
  return static_cast<S>(x);
}

// 16 bytes of consecutive elements of a row (8 bf16, 4 f32, 2 f64): the unit of the vectorised
// row loads and stores (cross-entropy's logits, bias_gelu's rows).
template <class S>
struct alignas(16) RowPack {
  static constexpr int kCount = 16 / sizeof(S);
  S v[kCount];
};

// Whether rows of `width` elements of S in these buffers move in whole RowPacks: the width
// divides into packs and every buffer is 16-byte aligned.
template <class S>
bool row_packed(int64_t width, std::initializer_list<const void*> buffers) {
  return width % RowPack<S>::kCount == 0 && aligned16(buffers);
}

// A thread's RowPack of a row at p: one 16-byte access when `packed` (p aligned, the pack
// whole), else its first `width` elements one by one (the rest zero).
template <class S>
__device__ __forceinline__ RowPack<S> load_pack(const S* p, int width, bool packed) {
  if (packed) return *reinterpret_cast<const RowPack<S>*>(p);
  RowPack<S> q{};
  for (int j = 0; j < width; ++j) q.v[j] = p[j];
  return q;
}

// Stores q at p the same way (only its first `width` elements when not `packed`).
template <class S>
__device__ __forceinline__ void store_pack(S* p, const RowPack<S>& q, int width, bool packed) {
  if (packed) {
    *reinterpret_cast<RowPack<S>*>(p) = q;
    return;
  }
  for (int j = 0; j < width; ++j) p[j] = q.v[j];
}

// dispatch_float (core/dispatch.h) with bf16 as a third storage type: body(__nv_bfloat16{}).
template <class Body>
void dispatch_storage(DType dtype, const char* op, Body&& body) {
  if (dtype == DType::BF16)
    body(__nv_bfloat16{});
  else
    dispatch_float(dtype, op, body);
}

}  // namespace sinklab::cuda
