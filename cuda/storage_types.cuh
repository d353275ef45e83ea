// Element types a CUDA kernel may read and write (f32, f64 and, as a storage format, bf16) and
// the type each one computes in: bf16 values are widened to f32 for arithmetic and rounded to
// nearest even when stored. Shared by the kernels that take bf16 activations (cross-entropy's
// logits, bias_gelu, the statistics probes).
#pragma once
#include <cuda_bf16.h>

#include "core/dispatch.h"

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

// dispatch_float (core/dispatch.h) with bf16 as a third storage type: body(__nv_bfloat16{}).
template <class Body>
void dispatch_storage(DType dtype, const char* op, Body&& body) {
  if (dtype == DType::BF16)
    body(__nv_bfloat16{});
  else
    dispatch_float(dtype, op, body);
}

}  // namespace sinklab::cuda
