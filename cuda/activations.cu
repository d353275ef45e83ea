// CUDA twins of ops/cpu/activations: gelu (tanh approximation), silu and swiglu, forward and
// backward. Elementwise over contiguous tensors of one shape, four elements per thread
// (cuda/elementwise_map.cuh), f32 and f64; the math is in the tensor's type with the accurate
// (non-fast-math) tanh/exp. swiglu also takes bf16 (LLaMA's FFN under bf16): 8 elements per
// thread, math in f32 (OperandMath below: __expf and __fdividef), results rounded to nearest even.
// bias_gelu: x (rows, F) stored in f32, f64 or bf16 (OperandMath for bf16), bias (F). Forward:
// a thread owns 16 bytes of consecutive columns (8 bf16, 4 f32, 2 f64: their bias in registers;
// one 16-byte access per buffer when the rows divide into such packs and the buffers are
// aligned) and walks the rows. Backward: the same layout over a chunk of rows per block writes
// grad x and the chunk's column partials of grad bias (summed before grad x is rounded to its
// storage type); column_finish_kernel (cuda/column_sums.cuh) adds the chunks in order:
// deterministic.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "core/dispatch.h"
#include "cuda/column_sums.cuh"
#include "cuda/elementwise_map.cuh"
#include "cuda/runtime.h"
#include "cuda/storage_types.cuh"
#include "ops/activations.h"

namespace sinklab::cuda {

namespace {

constexpr int kThreads = 256;

template <class T> struct Consts;
template <> struct Consts<float> {
  static constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2 / pi)
  static constexpr float kCubic = 0.044715f;
};
template <> struct Consts<double> {
  static constexpr double kSqrt2OverPi = 0.79788456080286535588;
  static constexpr double kCubic = 0.044715;
};

__device__ __forceinline__ float tanh_t(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_t(double v) { return tanh(v); }
__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }

template <class T>
__device__ __forceinline__ T gelu_value(T x) {
  const T t = tanh_t(Consts<T>::kSqrt2OverPi * (x + Consts<T>::kCubic * x * x * x));
  return T(0.5) * x * (T(1) + t);
}

template <class T>
__device__ __forceinline__ T gelu_derivative(T x) {
  const T t = tanh_t(Consts<T>::kSqrt2OverPi * (x + Consts<T>::kCubic * x * x * x));
  const T du_dx = Consts<T>::kSqrt2OverPi * (T(1) + T(3) * Consts<T>::kCubic * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du_dx;
}

// exp overflow gives 1 / inf = 0: no NaN for very negative x.
template <class T>
__device__ __forceinline__ T sigmoid(T x) { return T(1) / (T(1) + exp_t(-x)); }

template <class T>
__device__ __forceinline__ T silu_value(T x) { return x * sigmoid(x); }

template <class T>
__device__ __forceinline__ T silu_derivative(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// Operand-precision math for bf16 storage (the results are rounded to bf16): f32 with the
// special-function unit's exponential (__expf) and an approximate division (__fdividef), 1e-6
// to 1e-5 relative (__expf's error grows with |x|: 2 + 1.2 |x| ulp), far below the 2^-9 rounding,
// in a fraction of the instructions of tanhf / expf and an IEEE division (ncu: the bf16
// bias_gelu backward at GPT-2 124M ran at 244 us against 140 us for its bytes, bound by tanhf). gelu's tanh form uses 0.5 (1 + tanh(u)) = sigmoid(2u) and
// 1 - tanh(u)^2 = 4 sigmoid(2u) (1 - sigmoid(2u)): no cancellation for negative x, where tanh
// is near -1. exp overflow gives 1 / inf = 0: no NaN for very negative x.
struct OperandMath {
  static __device__ __forceinline__ float sigmoid(float x) {
    return __fdividef(1.f, 1.f + __expf(-x));
  }
  static __device__ __forceinline__ float gelu(float x) {
    const float u = Consts<float>::kSqrt2OverPi * (x + Consts<float>::kCubic * x * x * x);
    return x * sigmoid(2.f * u);
  }
  static __device__ __forceinline__ float gelu_derivative(float x) {
    const float u = Consts<float>::kSqrt2OverPi * (x + Consts<float>::kCubic * x * x * x);
    const float du_dx = Consts<float>::kSqrt2OverPi * (1.f + 3.f * Consts<float>::kCubic * x * x);
    const float s = sigmoid(2.f * u);
    return s + 2.f * x * s * (1.f - s) * du_dx;
  }
  static __device__ __forceinline__ float silu(float x) { return x * sigmoid(x); }
  static __device__ __forceinline__ float silu_derivative(float x) {
    const float s = sigmoid(x);
    return s * (1.f + x * (1.f - s));
  }
};

// f32 and f64 storage keep the accurate functions above.
struct AccurateMath {
  template <class T> static __device__ __forceinline__ T gelu(T x) { return gelu_value(x); }
  template <class T> static __device__ __forceinline__ T gelu_derivative(T x) {
    return sinklab::cuda::gelu_derivative(x);
  }
};

// The math for a storage type S.
template <class S>
using MathFor = std::conditional_t<std::is_same_v<S, __nv_bfloat16>, OperandMath, AccurateMath>;

// ---------------------------------------------------------------------------------------------
// Element maps (cuda/elementwise_map.cuh runs them four elements per thread).

struct GeluValue {
  template <class T> __device__ T operator()(T x) const { return gelu_value(x); }
};
struct GeluGrad {  // (upstream gradient, x) -> gradient of x
  template <class T> __device__ T operator()(T g, T x) const { return g * gelu_derivative(x); }
};
struct SiluValue {
  template <class T> __device__ T operator()(T x) const { return silu_value(x); }
};
struct SiluGrad {
  template <class T> __device__ T operator()(T g, T x) const { return g * silu_derivative(x); }
};
struct SwigluValue {  // (gate, up) -> silu(gate) * up
  template <class T> __device__ T operator()(T gate, T up) const { return silu_value(gate) * up; }
};

// grad, gate, up (n); grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate), each (n)
// or null (skipped).
template <class T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* grad_gate,
                                       T* grad_up, int64_t n, bool packed) {
  const int64_t i = first_of_four();
  if (i >= n) return;
  const Four<T> g = load_four(grad, i, n, packed), a = load_four(gate, i, n, packed);
  if (grad_gate) {
    const Four<T> u = load_four(up, i, n, packed);
    Four<T> out;
    for (int j = 0; j < 4; ++j) out.v[j] = g.v[j] * u.v[j] * silu_derivative(a.v[j]);
    store_four(grad_gate, i, n, packed, out);
  }
  if (grad_up) {
    Four<T> out;
    for (int j = 0; j < 4; ++j) out.v[j] = g.v[j] * silu_value(a.v[j]);
    store_four(grad_up, i, n, packed, out);
  }
}

// A thread's RowPack (cuda/storage_types.cuh) of a row: one access when `packed`, else its first
// `width` elements one by one.
template <class S>
__device__ __forceinline__ RowPack<S> load_pack(const S* p, int width, bool packed) {
  if (packed) return *reinterpret_cast<const RowPack<S>*>(p);
  RowPack<S> q{};
  for (int j = 0; j < width; ++j) q.v[j] = p[j];
  return q;
}

template <class S>
__device__ __forceinline__ void store_pack(S* p, const RowPack<S>& q, int width, bool packed) {
  if (packed) {
    *reinterpret_cast<RowPack<S>*>(p) = q;
    return;
  }
  for (int j = 0; j < width; ++j) p[j] = q.v[j];
}

// swiglu on bf16 storage (LLaMA's FFN under bf16: gate and up written in bf16 by their
// products, u read by down_proj as its operand): f32 arithmetic, results rounded to nearest
// even. Each thread takes one 16-byte pack of 8 elements (element by element at the tail or
// when a buffer is not 16-byte aligned).
constexpr int kBf16Pack = RowPack<__nv_bfloat16>::kCount;

template <class Fn>
__device__ __forceinline__ void for_pack_of_8(int64_t n, bool packed, Fn&& fn) {
  const int64_t i0 = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * kBf16Pack;
  if (i0 >= n) return;
  const int64_t left = n - i0;
  fn(i0, static_cast<int>(left < kBf16Pack ? left : kBf16Pack), packed && left >= kBf16Pack);
}

__global__ void swiglu_forward_bf16_kernel(const __nv_bfloat16* __restrict__ gate,
                                           const __nv_bfloat16* __restrict__ up,
                                           __nv_bfloat16* __restrict__ out, int64_t n,
                                           bool packed) {
  for_pack_of_8(n, packed, [&](int64_t i, int width, bool whole) {
    const RowPack<__nv_bfloat16> a = load_pack(gate + i, width, whole);
    const RowPack<__nv_bfloat16> b = load_pack(up + i, width, whole);
    RowPack<__nv_bfloat16> y;
#pragma unroll
    for (int j = 0; j < kBf16Pack; ++j)
      y.v[j] = __float2bfloat16_rn(OperandMath::silu(to_acc(a.v[j])) * to_acc(b.v[j]));
    store_pack(out + i, y, width, whole);
  });
}

// grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate), each (n) or null (skipped).
__global__ void swiglu_backward_bf16_kernel(const __nv_bfloat16* __restrict__ grad,
                                            const __nv_bfloat16* __restrict__ gate,
                                            const __nv_bfloat16* __restrict__ up,
                                            __nv_bfloat16* __restrict__ grad_gate,
                                            __nv_bfloat16* __restrict__ grad_up, int64_t n,
                                            bool packed) {
  for_pack_of_8(n, packed, [&](int64_t i, int width, bool whole) {
    const RowPack<__nv_bfloat16> g = load_pack(grad + i, width, whole);
    const RowPack<__nv_bfloat16> a = load_pack(gate + i, width, whole);
    if (grad_gate) {
      const RowPack<__nv_bfloat16> u = load_pack(up + i, width, whole);
      RowPack<__nv_bfloat16> d;
#pragma unroll
      for (int j = 0; j < kBf16Pack; ++j)
        d.v[j] = __float2bfloat16_rn(to_acc(g.v[j]) * to_acc(u.v[j]) *
                                     OperandMath::silu_derivative(to_acc(a.v[j])));
      store_pack(grad_gate + i, d, width, whole);
    }
    if (grad_up) {
      RowPack<__nv_bfloat16> d;
#pragma unroll
      for (int j = 0; j < kBf16Pack; ++j)
        d.v[j] = __float2bfloat16_rn(to_acc(g.v[j]) * OperandMath::silu(to_acc(a.v[j])));
      store_pack(grad_up + i, d, width, whole);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// bias_gelu.

constexpr int kBiasCols = 64;  // threads across columns in a bias_gelu block
constexpr int kBiasRows = 4;   // threads across rows

// x, out (rows, F) in S; bias (F) in A: out = gelu(x + bias), computed in A. Block (64, 4): a
// thread owns RowPack<S>::kCount consecutive columns and walks rows.
template <class S>
__global__ void __launch_bounds__(kBiasCols * kBiasRows)
    bias_gelu_forward_kernel(const S* __restrict__ x,
                             const typename AccumulateIn<S>::type* __restrict__ bias,
                             S* __restrict__ out, int64_t rows, int64_t F, bool packed) {
  using A = typename AccumulateIn<S>::type;
  constexpr int kPer = RowPack<S>::kCount;
  const int64_t c0 = kPer * (blockIdx.x * static_cast<int64_t>(kBiasCols) + threadIdx.x);
  if (c0 >= F) return;
  const int width = static_cast<int>(F - c0 < kPer ? F - c0 : kPer);
  A b[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) b[j] = j < width ? bias[c0 + j] : A(0);
  for (int64_t r = blockIdx.y * static_cast<int64_t>(kBiasRows) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.y) * kBiasRows) {
    const RowPack<S> in = load_pack(x + r * F + c0, width, packed);
    RowPack<S> y;
#pragma unroll
    for (int j = 0; j < kPer; ++j) y.v[j] = from_acc<S>(MathFor<S>::gelu(to_acc(in.v[j]) + b[j]));
    store_pack(out + r * F + c0, y, width, packed);
  }
}

// grad, x, grad_x (rows, F) in S; bias (F) in A. Block kBiasCols * kBiasRows threads in x,
// RowPack<S>::kCount columns each; blockIdx.y is a chunk of rows: grad_x = grad * gelu'(x +
// bias) (rounded to S), and partial (chunks, F) in f64 gets the chunk's column sums of the
// unrounded values, in row order (column_finish_kernel then adds the chunks in order:
// deterministic).
template <class S>
__global__ void __launch_bounds__(kBiasCols * kBiasRows)
    bias_gelu_backward_kernel(const S* __restrict__ grad, const S* __restrict__ x,
                              const typename AccumulateIn<S>::type* __restrict__ bias,
                              S* __restrict__ grad_x, double* __restrict__ partial, int64_t rows,
                              int64_t F, int64_t rows_per_chunk, bool packed) {
  using A = typename AccumulateIn<S>::type;
  constexpr int kPer = RowPack<S>::kCount;
  const int64_t c0 = kPer * (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x);
  if (c0 >= F) return;
  const int width = static_cast<int>(F - c0 < kPer ? F - c0 : kPer);
  A b[kPer], acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    b[j] = j < width ? bias[c0 + j] : A(0);
    acc[j] = A(0);
  }
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
#pragma unroll 2
  for (int64_t r = r0; r < r1; ++r) {
    const RowPack<S> g = load_pack(grad + r * F + c0, width, packed);
    const RowPack<S> v = load_pack(x + r * F + c0, width, packed);
    RowPack<S> out;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const A d = to_acc(g.v[j]) * MathFor<S>::gelu_derivative(to_acc(v.v[j]) + b[j]);
      out.v[j] = from_acc<S>(d);
      acc[j] += d;
    }
    store_pack(grad_x + r * F + c0, out, width, packed);
  }
  for (int j = 0; j < width; ++j)
    partial[blockIdx.y * F + c0 + j] = static_cast<double>(acc[j]);
}

// Blocks across F for threads of RowPack<S>::kCount columns, `threads` per block row.
template <class S>
int64_t column_blocks(int64_t F, int threads) {
  const int64_t per_block = static_cast<int64_t>(RowPack<S>::kCount) * threads;
  return (F + per_block - 1) / per_block;
}

void bias_gelu_forward_cuda(const Tensor& x, const Tensor& bias, Tensor& out) {
  const int64_t rows = x.size(0), F = x.size(1);
  if (rows == 0 || F == 0) return;
  dispatch_storage(x.dtype(), "bias_gelu forward", [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const bool packed = row_packed<S>(F, {x.raw_data(), out.raw_data()});
    const int64_t col_blocks = column_blocks<S>(F, kBiasCols);
    // About 4096 blocks: each thread walks rows / (grid.y * 4) rows with its bias in registers.
    const int64_t row_blocks = std::clamp<int64_t>(
        4096 / col_blocks, 1, std::min<int64_t>((rows + kBiasRows - 1) / kBiasRows, 65535));
    bias_gelu_forward_kernel<S><<<dim3(static_cast<unsigned>(col_blocks),
                                       static_cast<unsigned>(row_blocks)),
                                  dim3(kBiasCols, kBiasRows), 0, stream()>>>(
        static_cast<const S*>(x.raw_data()), bias.data<A>(), static_cast<S*>(out.raw_data()),
        rows, F, packed);
    SINKLAB_KERNEL_CHECK("bias_gelu forward");
  });
}

void bias_gelu_backward_cuda(const Tensor& grad, const Tensor& x, const Tensor& bias,
                             Tensor& grad_x, Tensor& grad_bias) {
  const int64_t rows = x.size(0), F = x.size(1);
  if (F == 0) return;
  constexpr int threads = kBiasCols * kBiasRows;
  dispatch_storage(x.dtype(), "bias_gelu backward", [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const int64_t col_blocks = column_blocks<S>(F, threads);
    // About 1024 blocks: enough to stream the rows at full bandwidth, few partials to add.
    const int64_t chunks = std::clamp<int64_t>(1024 / col_blocks, 1, std::max<int64_t>(rows, 1));
    const int64_t rows_per_chunk = std::max<int64_t>(1, (rows + chunks - 1) / chunks);
    const int64_t used = std::max<int64_t>(1, (rows + rows_per_chunk - 1) / rows_per_chunk);
    Tensor partial = Tensor::empty({used, F}, DType::F64, x.device());  // (chunks, F)
    const bool packed = row_packed<S>(F, {grad.raw_data(), x.raw_data(), grad_x.raw_data()});
    bias_gelu_backward_kernel<S><<<dim3(static_cast<unsigned>(col_blocks),
                                        static_cast<unsigned>(used)),
                                   threads, 0, stream()>>>(
        static_cast<const S*>(grad.raw_data()), static_cast<const S*>(x.raw_data()),
        bias.data<A>(), static_cast<S*>(grad_x.raw_data()), partial.data<double>(), rows, F,
        rows_per_chunk, packed);
    SINKLAB_KERNEL_CHECK("bias_gelu backward");
    column_finish_kernel<A, 1><<<blocks_for(F), 256, 0, stream()>>>(
        partial.data<double>(), used, F, grad_bias.data<A>(), nullptr);
    SINKLAB_KERNEL_CHECK("bias_gelu backward (bias)");
  });
}

// ---------------------------------------------------------------------------------------------
// Launchers (the signatures of ops/activations.h).

void gelu_forward_cuda(const Tensor& x, Tensor& out) {
  launch_unary_map<GeluValue>(x, out, "gelu forward");
}

void gelu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  launch_binary_map<GeluGrad>(grad, x, grad_x, "gelu backward");
}

void silu_forward_cuda(const Tensor& x, Tensor& out) {
  launch_unary_map<SiluValue>(x, out, "silu forward");
}

void silu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  launch_binary_map<SiluGrad>(grad, x, grad_x, "silu backward");
}

void swiglu_forward_cuda(const Tensor& gate, const Tensor& up, Tensor& out) {
  if (gate.dtype() == DType::BF16) {
    const int64_t n = gate.numel();
    if (n == 0) return;
    using bf16 = __nv_bfloat16;
    swiglu_forward_bf16_kernel<<<blocks_for((n + kBf16Pack - 1) / kBf16Pack, kThreads),
                                 kThreads, 0, stream()>>>(
        static_cast<const bf16*>(gate.raw_data()), static_cast<const bf16*>(up.raw_data()),
        static_cast<bf16*>(out.raw_data()), n,
        aligned16({gate.raw_data(), up.raw_data(), out.raw_data()}));
    SINKLAB_KERNEL_CHECK("swiglu forward (bf16)");
    return;
  }
  launch_binary_map<SwigluValue>(gate, up, out, "swiglu forward");
}

void swiglu_backward_cuda(const Tensor& grad, const Tensor& gate, const Tensor& up,
                          Tensor* grad_gate, Tensor* grad_up) {
  const int64_t n = gate.numel();
  if (n == 0 || (!grad_gate && !grad_up)) return;
  void* pgg = grad_gate ? grad_gate->raw_data() : nullptr;  // (n) or none
  void* pgu = grad_up ? grad_up->raw_data() : nullptr;      // (n) or none
  const bool packed = aligned16({grad.raw_data(), gate.raw_data(), up.raw_data(), pgg, pgu});
  if (gate.dtype() == DType::BF16) {
    using bf16 = __nv_bfloat16;
    swiglu_backward_bf16_kernel<<<blocks_for((n + kBf16Pack - 1) / kBf16Pack, kThreads),
                                  kThreads, 0, stream()>>>(
        static_cast<const bf16*>(grad.raw_data()), static_cast<const bf16*>(gate.raw_data()),
        static_cast<const bf16*>(up.raw_data()), static_cast<bf16*>(pgg),
        static_cast<bf16*>(pgu), n, packed);
    SINKLAB_KERNEL_CHECK("swiglu backward (bf16)");
    return;
  }
  dispatch_float(gate.dtype(), "swiglu", [&](auto zero) {
    using T = decltype(zero);
    swiglu_backward_kernel<T><<<blocks_for_fours(n, kThreads), kThreads, 0, stream()>>>(
        grad.data<T>(), gate.data<T>(), up.data<T>(), static_cast<T*>(pgg),
        static_cast<T*>(pgu), n, packed);
    SINKLAB_KERNEL_CHECK("swiglu backward");
  });
}

}  // namespace

void install_activation_kernels() {
  ops::gelu_kernels.cuda_forward = gelu_forward_cuda;
  ops::gelu_kernels.cuda_backward = gelu_backward_cuda;
  ops::silu_kernels.cuda_forward = silu_forward_cuda;
  ops::silu_kernels.cuda_backward = silu_backward_cuda;
  ops::swiglu_kernels.cuda_forward = swiglu_forward_cuda;
  ops::swiglu_kernels.cuda_backward = swiglu_backward_cuda;
  ops::bias_gelu_kernels.cuda_forward = bias_gelu_forward_cuda;
  ops::bias_gelu_kernels.cuda_backward = bias_gelu_backward_cuda;
}

}  // namespace sinklab::cuda
