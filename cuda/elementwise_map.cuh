// Elementwise maps over contiguous buffers of n elements, shared by the CUDA kernel files:
// thread t handles elements 4t .. 4t+3, with one 16-byte load or store per buffer (float4) when
// the element type is float and every buffer is 16-byte aligned, element by element otherwise
// (f64, unaligned views, the tail of n). Four elements per thread give each thread several
// independent memory accesses in flight, which a one-element-per-thread kernel lacks.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/dispatch.h"
#include "cuda/check.h"
#include "cuda/runtime.h"

namespace sinklab::cuda {

template <class T>
struct Four {
  T v[4];
};

// Index of the first of the calling thread's four elements.
__device__ __forceinline__ int64_t first_of_four() {
  return 4 * (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x);
}

// p[i .. i+3] (zeros past n).
template <class T>
__device__ __forceinline__ Four<T> load_four(const T* p, int64_t i, int64_t n, bool packed) {
  Four<T> f{};
  if constexpr (std::is_same_v<T, float>) {
    if (packed && i + 3 < n) {
      const float4 q = *reinterpret_cast<const float4*>(p + i);
      f.v[0] = q.x;
      f.v[1] = q.y;
      f.v[2] = q.z;
      f.v[3] = q.w;
      return f;
    }
  }
  for (int j = 0; j < 4 && i + j < n; ++j) f.v[j] = p[i + j];
  return f;
}

// p[i .. i+3] = f (only the elements below n).
template <class T>
__device__ __forceinline__ void store_four(T* p, int64_t i, int64_t n, bool packed,
                                           const Four<T>& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (packed && i + 3 < n) {
      *reinterpret_cast<float4*>(p + i) = make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
      return;
    }
  }
  for (int j = 0; j < 4 && i + j < n; ++j) p[i + j] = f.v[j];
}

// out = op(a) elementwise, n elements.
template <class T, class Op>
__global__ void unary_map_kernel(const T* a, T* out, int64_t n, bool packed, Op op) {
  const int64_t i = first_of_four();
  if (i >= n) return;
  const Four<T> x = load_four(a, i, n, packed);
  Four<T> y;
  for (int j = 0; j < 4; ++j) y.v[j] = op(x.v[j]);
  store_four(out, i, n, packed, y);
}

// out = op(a, b) elementwise, n elements; out may alias a or b (each element is read before it
// is written, by the same thread).
template <class T, class Op>
__global__ void binary_map_kernel(const T* a, const T* b, T* out, int64_t n, bool packed,
                                  Op op) {
  const int64_t i = first_of_four();
  if (i >= n) return;
  const Four<T> x = load_four(a, i, n, packed), y = load_four(b, i, n, packed);
  Four<T> z;
  for (int j = 0; j < 4; ++j) z.v[j] = op(x.v[j], y.v[j]);
  store_four(out, i, n, packed, z);
}

// The sum as a map (gradient accumulation, add).
struct Plus {
  template <class T> __device__ T operator()(T x, T y) const { return x + y; }
};

// Blocks of `threads` threads for n elements, four per thread.
inline unsigned blocks_for_fours(int64_t n, int threads = 256) {
  return blocks_for((n + 3) / 4, threads);
}

// Launchers on the compute stream, f32 or f64 (a DTypeError naming op otherwise):
// out (n) = Op(a (n)), and out (n) = Op(a (n), b (n)) with out possibly a.
template <class Op>
void launch_unary_map(const Tensor& a, Tensor& out, const char* op) {
  const int64_t n = a.numel();
  if (n == 0) return;
  dispatch_float(a.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    unary_map_kernel<<<blocks_for_fours(n), 256, 0, stream()>>>(
        a.data<T>(), out.data<T>(), n, aligned16({a.raw_data(), out.raw_data()}), Op{});
    SINKLAB_KERNEL_CHECK(op);
  });
}

template <class Op>
void launch_binary_map(const Tensor& a, const Tensor& b, Tensor& out, const char* op) {
  const int64_t n = a.numel();
  if (n == 0) return;
  dispatch_float(a.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    binary_map_kernel<<<blocks_for_fours(n), 256, 0, stream()>>>(
        a.data<T>(), b.data<T>(), out.data<T>(), n,
        aligned16({a.raw_data(), b.raw_data(), out.raw_data()}), Op{});
    SINKLAB_KERNEL_CHECK(op);
  });
}

}  // namespace sinklab::cuda
