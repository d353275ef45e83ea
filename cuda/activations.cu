// CUDA twins of ops/cpu/activations: gelu (tanh approximation), silu, swiglu and swiglu_packed,
// forward and backward. gelu and silu: elementwise over contiguous tensors of one shape, four
// elements per thread (cuda/elementwise_map.cuh), f32 and f64; the math is in the tensor's type
// with the accurate (non-fast-math) tanh/exp. swiglu and swiglu_packed (one kernel pair over rows
// whose gate and up are separate tensors or the halves of each packed row): f32 and f64 as
// gelu, and bf16 (LLaMA's FFN under bf16): 16 bytes (8 elements) per thread, math in f32
// (OperandMath below: __expf and __fdividef), results rounded to nearest even.
// bias_gelu: x (rows, F) stored in f32, f64 or bf16 (OperandMath for bf16), bias (F). Forward:
// a thread owns 16 bytes of consecutive columns (8 bf16, 4 f32, 2 f64: their bias in registers;
// one 16-byte access per buffer when the rows divide into such packs and the buffers are
// aligned) and walks the rows. Backward: the same layout over a chunk of rows per block writes
// grad x and the chunk's column partials of grad bias (summed before grad x is rounded to its
// storage type); column_finish (cuda/column_sums.cuh) adds the chunks in a fixed order:
// deterministic.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
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
  template <class T> static __device__ __forceinline__ T silu(T x) { return silu_value(x); }
  template <class T> static __device__ __forceinline__ T silu_derivative(T x) {
    return sinklab::cuda::silu_derivative(x);
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
// ---------------------------------------------------------------------------------------------
// swiglu and swiglu_packed: out = silu(gate) * up over (rows, F), computed in MathFor<S> (f32
// with __expf / __fdividef for bf16 storage, LLaMA's FFN under bf16; the accurate functions in
// the storage type for f32 and f64) and rounded to the storage type. swiglu's gate, up and out
// are one row of n elements each; swiglu_packed's gate and up are the two halves of each
// (2F) row of gate_up, and their gradients the two halves of each row of grad gate_up. Each
// thread takes one RowPack (16 bytes: 8 bf16, 4 f32, 2 f64) of consecutive columns of one row:
// one access per buffer when the pack is whole and every row of every buffer starts 16-byte
// aligned, element by element otherwise (a row's tail, unaligned views).

// Where the elements (r, c) of a gated map lie: gate, up and their gradients at
// r * in_stride + c from their first element, out and the upstream gradient at r * out_stride + c.
struct GatedRows {
  int64_t rows, F, in_stride, out_stride;
};

// Whether the rows of every buffer (their first elements; null ones ignored) start 16-byte
// aligned, so that the whole packs move in one access each.
template <class S>
bool rows_aligned(const GatedRows& g, std::initializer_list<const void*> buffers) {
  constexpr int kPer = RowPack<S>::kCount;
  return (g.rows == 1 || (g.in_stride % kPer == 0 && g.out_stride % kPer == 0)) &&
         aligned16(buffers);
}

template <class S>
int64_t packs_of(const GatedRows& g) {
  constexpr int kPer = RowPack<S>::kCount;
  return g.rows * ((g.F + kPer - 1) / kPer);
}

// fn(in_at, out_at, width, whole) for the calling thread's pack: `width` columns of one row from
// element in_at of the gate / up buffers and out_at of the out / upstream gradient buffers;
// `whole` when it moves in one access per buffer.
template <class S, class Fn>
__device__ __forceinline__ void for_gated_pack(const GatedRows& g, bool aligned, Fn&& fn) {
  constexpr int kPer = RowPack<S>::kCount;
  const int64_t per_row = (g.F + kPer - 1) / kPer;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= g.rows * per_row) return;
  const int64_t r = p / per_row, c0 = (p - r * per_row) * kPer;
  const int width = static_cast<int>(g.F - c0 < kPer ? g.F - c0 : kPer);
  fn(r * g.in_stride + c0, r * g.out_stride + c0, width, aligned && width == kPer);
}

template <class S>
__global__ void swiglu_forward_kernel(const S* __restrict__ gate, const S* __restrict__ up,
                                      S* __restrict__ out, GatedRows g, bool aligned) {
  for_gated_pack<S>(g, aligned, [&](int64_t in_at, int64_t out_at, int width, bool whole) {
    const RowPack<S> a = load_pack(gate + in_at, width, whole);
    const RowPack<S> b = load_pack(up + in_at, width, whole);
    RowPack<S> y;
#pragma unroll
    for (int j = 0; j < RowPack<S>::kCount; ++j)
      y.v[j] = from_acc<S>(MathFor<S>::silu(to_acc(a.v[j])) * to_acc(b.v[j]));
    store_pack(out + out_at, y, width, whole);
  });
}

// grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate), each null (skipped) or laid
// out as gate and up.
template <class S>
__global__ void swiglu_backward_kernel(const S* __restrict__ grad, const S* __restrict__ gate,
                                       const S* __restrict__ up, S* __restrict__ grad_gate,
                                       S* __restrict__ grad_up, GatedRows g, bool aligned) {
  for_gated_pack<S>(g, aligned, [&](int64_t in_at, int64_t out_at, int width, bool whole) {
    const RowPack<S> d = load_pack(grad + out_at, width, whole);
    const RowPack<S> a = load_pack(gate + in_at, width, whole);
    if (grad_gate) {
      const RowPack<S> u = load_pack(up + in_at, width, whole);
      RowPack<S> dg;
#pragma unroll
      for (int j = 0; j < RowPack<S>::kCount; ++j)
        dg.v[j] = from_acc<S>(to_acc(d.v[j]) * to_acc(u.v[j]) *
                              MathFor<S>::silu_derivative(to_acc(a.v[j])));
      store_pack(grad_gate + in_at, dg, width, whole);
    }
    if (grad_up) {
      RowPack<S> du;
#pragma unroll
      for (int j = 0; j < RowPack<S>::kCount; ++j)
        du.v[j] = from_acc<S>(to_acc(d.v[j]) * MathFor<S>::silu(to_acc(a.v[j])));
      store_pack(grad_up + in_at, du, width, whole);
    }
  });
}

// Element `first` of t's buffer as an S pointer: an operand, and an output (null if none).
template <class S>
const S* element(const Tensor& t, int64_t first) {
  return static_cast<const S*>(t.raw_data()) + first;
}
template <class S>
S* element(Tensor* t, int64_t first) {
  return t ? static_cast<S*>(t->raw_data()) + first : nullptr;
}

// out = silu(gate) * up over g; gate and up start at element gate_first / up_first of theirs.
void launch_swiglu_forward(const Tensor& gate, int64_t gate_first, const Tensor& up,
                           int64_t up_first, Tensor& out, const GatedRows& g) {
  if (g.rows == 0 || g.F == 0) return;
  dispatch_storage(gate.dtype(), "swiglu forward", [&](auto zero) {
    using S = decltype(zero);
    const S* pa = element<S>(gate, gate_first);  // (rows, F), rows in_stride apart
    const S* pu = element<S>(up, up_first);      // (rows, F), rows in_stride apart
    S* po = element<S>(&out, 0);                 // (rows, F), rows out_stride apart
    swiglu_forward_kernel<S><<<blocks_for(packs_of<S>(g), kThreads), kThreads, 0, stream()>>>(
        pa, pu, po, g, rows_aligned<S>(g, {pa, pu, po}));
    SINKLAB_KERNEL_CHECK("swiglu forward");
  });
}

// The gradients of launch_swiglu_forward's gate and up (grad_gate / grad_up null: skipped), laid
// out as gate and up from element first of theirs.
void launch_swiglu_backward(const Tensor& grad, const Tensor& gate, int64_t gate_first,
                            const Tensor& up, int64_t up_first, Tensor* grad_gate,
                            int64_t grad_gate_first, Tensor* grad_up, int64_t grad_up_first,
                            const GatedRows& g) {
  if (g.rows == 0 || g.F == 0 || (!grad_gate && !grad_up)) return;
  dispatch_storage(gate.dtype(), "swiglu backward", [&](auto zero) {
    using S = decltype(zero);
    const S* pd = element<S>(grad, 0);                // (rows, F), rows out_stride apart
    const S* pa = element<S>(gate, gate_first);       // (rows, F), rows in_stride apart
    const S* pu = element<S>(up, up_first);           // (rows, F), rows in_stride apart
    S* pga = element<S>(grad_gate, grad_gate_first);  // (rows, F) like gate, or null
    S* pgu = element<S>(grad_up, grad_up_first);      // (rows, F) like up, or null
    swiglu_backward_kernel<S><<<blocks_for(packs_of<S>(g), kThreads), kThreads, 0, stream()>>>(
        pd, pa, pu, pga, pgu, g, rows_aligned<S>(g, {pd, pa, pu, pga, pgu}));
    SINKLAB_KERNEL_CHECK("swiglu backward");
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
// unrounded values, in row order (column_finish then adds the chunks in a fixed order:
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
  // The next row's packs are loaded before this row's math and store, so that two rows' loads
  // are in flight whatever the compiler schedules (with `#pragma unroll 2` alone the kernel
  // took 247 us a call on the H100 for GPT-2's FFN, 229 us with this).
  RowPack<S> g_next, v_next;
  if (r0 < r1) {
    g_next = load_pack(grad + r0 * F + c0, width, packed);
    v_next = load_pack(x + r0 * F + c0, width, packed);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const RowPack<S> g = g_next, v = v_next;
    if (r + 1 < r1) {
      g_next = load_pack(grad + (r + 1) * F + c0, width, packed);
      v_next = load_pack(x + (r + 1) * F + c0, width, packed);
    }
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
    column_finish<A, 1>(partial.data<double>(), used, F, grad_bias.data<A>(), nullptr);
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

// swiglu: gate, up, out (n) as one row.
void swiglu_forward_cuda(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t n = gate.numel();
  launch_swiglu_forward(gate, 0, up, 0, out, {1, n, n, n});
}

void swiglu_backward_cuda(const Tensor& grad, const Tensor& gate, const Tensor& up,
                          Tensor* grad_gate, Tensor* grad_up) {
  const int64_t n = gate.numel();
  launch_swiglu_backward(grad, gate, 0, up, 0, grad_gate, 0, grad_up, 0, {1, n, n, n});
}

// swiglu_packed: gate_up (rows, 2F) -> out (rows, F); gate is columns [0, F), up [F, 2F).
GatedRows packed_rows(const Tensor& out) {
  const int64_t F = out.dim() ? out.size(-1) : 0;
  return {F ? out.numel() / F : 0, F, 2 * F, F};
}

void swiglu_packed_forward_cuda(const Tensor& gate_up, Tensor& out) {
  const GatedRows g = packed_rows(out);
  launch_swiglu_forward(gate_up, 0, gate_up, g.F, out, g);
}

void swiglu_packed_backward_cuda(const Tensor& grad, const Tensor& gate_up,
                                 Tensor& grad_gate_up) {
  const GatedRows g = packed_rows(grad);
  launch_swiglu_backward(grad, gate_up, 0, gate_up, g.F, &grad_gate_up, 0, &grad_gate_up, g.F,
                         g);
}

}  // namespace

void install_activation_kernels() {
  ops::gelu_kernels.cuda_forward = gelu_forward_cuda;
  ops::gelu_kernels.cuda_backward = gelu_backward_cuda;
  ops::silu_kernels.cuda_forward = silu_forward_cuda;
  ops::silu_kernels.cuda_backward = silu_backward_cuda;
  ops::swiglu_kernels.cuda_forward = swiglu_forward_cuda;
  ops::swiglu_kernels.cuda_backward = swiglu_backward_cuda;
  ops::swiglu_packed_kernels.cuda_forward = swiglu_packed_forward_cuda;
  ops::swiglu_packed_kernels.cuda_backward = swiglu_packed_backward_cuda;
  ops::bias_gelu_kernels.cuda_forward = bias_gelu_forward_cuda;
  ops::bias_gelu_kernels.cuda_backward = bias_gelu_backward_cuda;
}

}  // namespace sinklab::cuda
