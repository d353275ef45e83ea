// CUDA twins of ops/cpu/layernorm and ops/cpu/rmsnorm: layernorm, rmsnorm and headwise_rmsnorm,
// and the residual add fused into layernorm's and rmsnorm's forward (add_layernorm,
// add_rmsnorm: the row kernel writes x + delta and normalises it in the same pass)
// (the last two share one kernel pair, as on the CPU: rows of length D and a gain of P elements
// repeating along the flattened x, row r using gain[(r * D) % P, + D)). f32 and f64 (and a bf16 x
// for the RMSNorms, math in f32); the math and the per-row accumulators are in the tensor's type
// (f32 accumulation for f32, f64 for f64);
// the cross-row parameter-gradient sums end in f64 (below). Every norm's output (and so its
// upstream gradient) may be bf16 for an f32 x (NormOutput::kOperandDType): computed in f32,
// stored rounded to nearest even once, read widened to f32 (with_norm_output below picks the
// kernels' store and load type); the residual sum, the statistics and x's and the parameters'
// gradients stay in x's dtype.
//
// Row kernels: one warp per row (8 rows per 256-thread block), lanes stride over the row,
// warp-shuffle (xor butterfly) sums, so every lane holds the bit-identical row total.
// layernorm's forward on f32 rows of C = 128 n (n <= 8; GPT-2's 768) keeps the row in registers
// (float4 per lane) instead: x and delta read once, nothing read back.
// Parameter gradients (layernorm weight/bias, rmsnorm gain) are column sums over rows, done in
// two deterministic passes without atomics: (1) blocks of 32 columns x a chunk of rows write one
// partial per (chunk, column) to an f64 scratch buffer (each thread sums its rows in order in the
// tensor's type, then the 8 thread rows are added in order in f64); (2) one thread per column
// adds the chunks in order in f64. The chunk count depends only on the shape, so results are
// bit-identical from run to run.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/check.h"
#include "core/dispatch.h"
#include "cuda/column_sums.cuh"
#include "cuda/storage_types.cuh"
#include "cuda/runtime.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/statistics.h"

namespace sinklab::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;                       // warps per block in the row kernels
constexpr int kRowThreads = kWarp * kRowsPerBlock;     // 256

// Row r of x (C), or with delta: row r of x + delta, written to sum_out by this lane's elements
// (c = lane, lane + 32, ...), which are the only ones the lane reads back. delta is stored as D:
// T, or bf16 for an f32 x (ops::bf16_branch_outputs), widened before the add.
template <class T, class D>
__device__ __forceinline__ const T* residual_row(const T* x, const D* delta, T* sum_out,
                                                 int64_t r, int64_t C, int lane) {
  if (delta == nullptr) return x + r * C;
  const T* xr = x + r * C;      // (C)
  const D* dr = delta + r * C;  // (C)
  T* sr = sum_out + r * C;      // (C)
  for (int64_t c = lane; c < C; c += kWarp) sr[c] = xr[c] + to_acc(dr[c]);
  return sr;
}

// Calls body with delta's data (rows, C) as the element type the forward kernels load: T*
// (x's dtype), __nv_bfloat16* for an f32 x's bf16 delta, or a null T* without a delta.
template <class T, class Body>
void with_delta(const Tensor& delta, Body&& body) {
  if (!delta.defined()) {
    body(static_cast<const T*>(nullptr));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (delta.dtype() == DType::BF16) {
      body(static_cast<const __nv_bfloat16*>(delta.raw_data()));
      return;
    }
  }
  body(delta.data<T>());
}

// a + b rounded once, never contracted with the product that made b: the sum the engine's add
// kernel would write (a folded residual gradient plus a norm's, fold_residual_grads).
__device__ __forceinline__ float add_exact(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_exact(double a, double b) { return __dadd_rn(a, b); }

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
  // xor butterfly: a + b == b + a exactly, so all lanes end with the same bits.
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float inv_sqrt(float v) { return 1.0f / sqrtf(v); }
__device__ __forceinline__ double inv_sqrt(double v) { return 1.0 / sqrt(v); }

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

// Calls body with the data of a norm's output y (rows, D), or of its upstream gradient (y's
// dtype), as the element type the kernels store or load: T* (x's dtype), or __nv_bfloat16* for
// an f32 x's bf16 output (NormOutput::kOperandDType). The pointer is const for a const tensor.
// Any other dtype fails data<T>()'s dtype check.
template <class T, class TensorRef, class Body>
void with_norm_output(TensorRef& t, Body&& body) {
  using Bf16 = std::conditional_t<std::is_const_v<TensorRef>, const __nv_bfloat16, __nv_bfloat16>;
  if constexpr (std::is_same_v<T, float>) {
    if (t.dtype() == DType::BF16) {
      body(static_cast<Bf16*>(t.raw_data()));
      return;
    }
  }
  body(t.template data<T>());
}

// body(y's data, delta's data) for a forward norm with its residual add: with_norm_output's y
// and with_delta's delta (null without one).
template <class T, class Body>
void with_output_and_delta(Tensor& y, const Tensor& delta, Body&& body) {
  with_norm_output<T>(y, [&](auto* py) {
    with_delta<T>(delta, [&](const auto* pdelta) { body(py, pdelta); });
  });
}

// grad_x_operand where the kernel that wrote grad_x could not write it in its pass: the rounding
// pass tensor_core_operand would have run (ops::bf16_round_kernels).
void round_operand(const Tensor& grad_x, Tensor& grad_x_operand) {
  ops::bf16_round_kernels.cuda_forward(grad_x, grad_x_operand);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

// x, y (rows, C); weight (C); bias (C) or null; mean, rstd (rows). One warp per row. y is
// stored as Y: T, or bf16 for an f32 x (NormOutput::kOperandDType), rounded to nearest even.
template <class T, class Y, class D>
__global__ void layernorm_forward_kernel(const T* x, const D* delta, T* sum_out, const T* weight,
                                         const T* bias, Y* y, T* mean, T* rstd, int64_t rows,
                                         int64_t C, T eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;  // the whole warp leaves together: the shuffles stay full-warp
  Y* yr = y + r * C;  // (C)
  // The row to normalise: x, or x + delta written to sum_out (each lane re-reads only the
  // elements it wrote).
  const T* xr = residual_row(x, delta, sum_out, r, C, lane);  // (C)
  T sum = T(0);
  for (int64_t c = lane; c < C; c += kWarp) sum += xr[c];
  const T mu = warp_sum(sum) / static_cast<T>(C);
  T sq = T(0);  // two passes: no cancellation when |mean| >> std
  for (int64_t c = lane; c < C; c += kWarp) {
    const T d = xr[c] - mu;
    sq += d * d;
  }
  const T inv = inv_sqrt(warp_sum(sq) / static_cast<T>(C) + eps);
  if (lane == 0) {
    mean[r] = mu;
    rstd[r] = inv;
  }
  for (int64_t c = lane; c < C; c += kWarp)
    yr[c] = from_acc<Y>((xr[c] - mu) * inv * weight[c] + (bias ? bias[c] : T(0)));
}

// The same for f32 rows of C = 128 n (n <= kMaxRowVectors) with 16-byte aligned buffers: the
// row stays in registers (lane l holds the float4s at 4 l + 128 i, i < n), so x and delta are
// read once and the sum and y written once, never read back (the kernel above re-reads its row
// three times). The sums run in a different order from the kernel above (same two-pass
// formulas); y is stored as Y (f32, or bf16 rounded to nearest even). kCentered: layernorm
// (mean subtracted, mean written, bias optional); otherwise RMSNorm (the same row kernel with a
// zero mean: y = x * rsqrt(mean(x^2) + eps) * weight, weight optional, mean and bias null).
constexpr int kMaxRowVectors = 8;  // C <= 1024

__device__ __forceinline__ void store_four(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}
__device__ __forceinline__ void store_four(__nv_bfloat16* p, float a, float b, float c, float d) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
  uint2 packed;  // one 8-byte store (p is 8-byte aligned: C = 128 n, 16-byte aligned rows)
  memcpy(&packed.x, &lo, sizeof(packed.x));
  memcpy(&packed.y, &hi, sizeof(packed.y));
  *reinterpret_cast<uint2*>(p) = packed;
}

// Four elements of a row (an upstream gradient's, or a bf16 delta's) as loaded (one 16-byte or
// 8-byte load), and widened to f32 (apart, so that a row's loads can all be issued before the
// first widening).
template <class G> struct FourOf;
template <> struct FourOf<float> { using type = float4; };
template <> struct FourOf<__nv_bfloat16> { using type = uint2; };
template <class G>
__device__ __forceinline__ typename FourOf<G>::type load_raw_four(const G* p) {
  return *reinterpret_cast<const typename FourOf<G>::type*>(p);
}
__device__ __forceinline__ float4 widen_four(float4 v) { return v; }
__device__ __forceinline__ float4 widen_four(uint2 raw) {
  __nv_bfloat162 lo, hi;
  memcpy(&lo, &raw.x, sizeof(lo));
  memcpy(&hi, &raw.y, sizeof(hi));
  const float2 a = __bfloat1622float2(lo), b = __bfloat1622float2(hi);
  return make_float4(a.x, a.y, b.x, b.y);
}

template <bool kCentered, class Y, class D>
__global__ void norm_forward_vec_kernel(const float* x, const D* delta, float* sum_out,
                                        const float* weight, const float* bias, Y* y, float* mean,
                                        float* rstd, int64_t rows, int64_t C, float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;  // the whole warp leaves together: the shuffles stay full-warp
  const int n = static_cast<int>(C / 128);  // float4s per lane
  float4 v[kMaxRowVectors];  // this lane's part of the row (x, or x + delta)
  typename FourOf<D>::type dv[kMaxRowVectors];  // delta's as loaded (f32 or bf16), if any
  // Every load before the first use and the first store (sum_out may alias nothing, but the
  // compiler cannot know: a store between two loads makes the second wait for the first).
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const int64_t at = r * C + 4 * lane + 128 * i;
    v[i] = *reinterpret_cast<const float4*>(x + at);
    if (delta) dv[i] = load_raw_four(delta + at);
  }
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    float4 a = v[i];
    if (delta) {
      const float4 d = widen_four(dv[i]);
      a = make_float4(a.x + d.x, a.y + d.y, a.z + d.z, a.w + d.w);
      *reinterpret_cast<float4*>(sum_out + r * C + 4 * lane + 128 * i) = a;
    }
    v[i] = a;
    sum += (a.x + a.y) + (a.z + a.w);
  }
  const float mu = kCentered ? warp_sum(sum) / static_cast<float>(C) : 0.f;
  float sq = 0.f;  // two passes: no cancellation when |mean| >> std
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const float a = v[i].x - mu, b = v[i].y - mu, c = v[i].z - mu, d = v[i].w - mu;
    sq += (a * a + b * b) + (c * c + d * d);
  }
  const float inv = inv_sqrt(warp_sum(sq) / static_cast<float>(C) + eps);
  if (lane == 0) {
    if (kCentered) mean[r] = mu;
    rstd[r] = inv;
  }
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const int64_t c = 4 * lane + 128 * i;
    const float4 w =
        weight ? *reinterpret_cast<const float4*>(weight + c) : make_float4(1, 1, 1, 1);
    const float4 b = bias ? *reinterpret_cast<const float4*>(bias + c) : make_float4(0, 0, 0, 0);
    store_four(y + r * C + c, (v[i].x - mu) * inv * w.x + b.x, (v[i].y - mu) * inv * w.y + b.y,
               (v[i].z - mu) * inv * w.z + b.z, (v[i].w - mu) * inv * w.w + b.w);
  }
}

// One row r of layernorm_backward_x_vec_kernel (C = 128 n, n <= kMaxRowVectors, 16-byte
// aligned buffers): the row in registers as in norm_forward_vec_kernel (lane l holds the float4s
// at 4 l + 128 i), so x and dy are read once; dx (and dx16) written. after(draw, xhat) sees this
// lane's dy as loaded and its xhat (the parameter gradients' terms).
template <class G, class After>
__device__ __forceinline__ void layernorm_backward_vec_row(const G* dy, const float* x,
                                                           const float* weight, const float* mean,
                                                           const float* rstd, const float* res,
                                                           float* dx, __nv_bfloat16* dx16,
                                                           int64_t r, int64_t C, After&& after) {
  const int lane = threadIdx.x % kWarp;
  const int n = static_cast<int>(C / 128);
  // Every load of the row first (x, dy and the residual gradient res), so that all are in
  // flight at once: loading res between the stores of dx made each wait for the one before.
  float4 xh[kMaxRowVectors], rv[kMaxRowVectors];  // x (then xhat) and res, this lane's part
  typename FourOf<G>::type draw[kMaxRowVectors];  // dy as loaded
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const int64_t at = r * C + 4 * lane + 128 * i;
    xh[i] = *reinterpret_cast<const float4*>(x + at);
    draw[i] = load_raw_four(dy + at);
    if (res) rv[i] = *reinterpret_cast<const float4*>(res + at);
  }
  const float mu = mean[r], inv = rstd[r];
  float4 gv[kMaxRowVectors];  // weight * dy, this lane's part
  float sum_g = 0.f, sum_g_xhat = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const int64_t c = 4 * lane + 128 * i;
    const float4 w = *reinterpret_cast<const float4*>(weight + c);
    const float4 d = widen_four(draw[i]);
    const float4 xv = xh[i];
    gv[i] = make_float4(w.x * d.x, w.y * d.y, w.z * d.z, w.w * d.w);
    xh[i] = make_float4((xv.x - mu) * inv, (xv.y - mu) * inv, (xv.z - mu) * inv,
                        (xv.w - mu) * inv);
    sum_g += (gv[i].x + gv[i].y) + (gv[i].z + gv[i].w);
    sum_g_xhat +=
        (gv[i].x * xh[i].x + gv[i].y * xh[i].y) + (gv[i].z * xh[i].z + gv[i].w * xh[i].w);
  }
  const float mean_g = warp_sum(sum_g) / static_cast<float>(C);
  const float mean_g_xhat = warp_sum(sum_g_xhat) / static_cast<float>(C);
#pragma unroll
  for (int i = 0; i < kMaxRowVectors; ++i) {
    if (i >= n) break;
    const int64_t at = r * C + 4 * lane + 128 * i;
    float4 v = make_float4(inv * (gv[i].x - mean_g - xh[i].x * mean_g_xhat),
                           inv * (gv[i].y - mean_g - xh[i].y * mean_g_xhat),
                           inv * (gv[i].z - mean_g - xh[i].z * mean_g_xhat),
                           inv * (gv[i].w - mean_g - xh[i].w * mean_g_xhat));
    if (res)
      v = make_float4(add_exact(rv[i].x, v.x), add_exact(rv[i].y, v.y), add_exact(rv[i].z, v.z),
                      add_exact(rv[i].w, v.w));
    *reinterpret_cast<float4*>(dx + at) = v;
    if (dx16) store_four(dx16 + at, v.x, v.y, v.z, v.w);
  }
  after(draw, xh);
}

// layernorm_backward_x_kernel for f32 rows of C = 128 n (n <= kMaxRowVectors; GPT-2's 768) with
// 16-byte aligned buffers, a warp per row (layernorm_backward_vec_row): x and dy are read once
// (the kernel below reads them twice); the same formulas, the sums in another order. dx16 (rows,
// C) or null: dx rounded to nearest even as well (the products' copy of a folded residual
// gradient, ops::remember_operand).
template <class G>
__global__ void layernorm_backward_x_vec_kernel(const G* dy, const float* x, const float* weight,
                                                const float* mean, const float* rstd,
                                                const float* res, float* dx,
                                                __nv_bfloat16* dx16, int64_t rows, int64_t C) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;  // the whole warp leaves together
  layernorm_backward_vec_row(dy, x, weight, mean, rstd, res, dx, dx16, r, C,
                             [](const auto&, const auto&) {});
}

// With run.fused_norm_param_grads, each warp of the norms' backward takes several consecutive
// batches of rows (LayerNorm: a row; grouped RMSNorm: 32 / G rows) and the block also leaves
// the parameters' gradient partials of its rows: otherwise the column sums read dy and x once
// more (150 MB a GPT-2 LayerNorm). Batches a warp: up to 16, so that about 256 blocks share
// them (32768: 16; 8192: 4); a function of the shape only, so the sums' order is the same on
// every GPU.
inline int64_t param_batches_per_warp(int64_t batches) {
  return std::clamp<int64_t>(batches / (256 * kRowsPerBlock), 1, 16);
}

// The block's parameter partials from its warps' shared-memory slices: slices (kRowsPerBlock,
// K, L) f32, one per warp, added in warp order in f64 into partial (K, gridDim.x, L), the
// layout column_finish reads. Every thread of the block calls it, after the slices are written.
template <int K>
__device__ void write_block_partials(const float* slices, int64_t L, double* partial) {
  __syncthreads();
  for (int64_t i = threadIdx.x; i < K * L; i += blockDim.x) {  // i = k L + c
    double sum = 0;
    for (int w = 0; w < kRowsPerBlock; ++w) sum += static_cast<double>(slices[w * K * L + i]);
    partial[(i / L * gridDim.x + blockIdx.x) * L + i % L] = sum;
  }
}

// layernorm_backward_x_vec_kernel and the parameter gradients' partials (ops::
// fused_norm_param_grads): partial (2, gridDim.x, C) f64 gets the block's column sums of
// dy * xhat (the weight's gradient) and dy (the bias's), for column_finish. Each warp adds its
// rows in order into its own slice of dynamic shared memory (kRowsPerBlock, 2, C) f32, then the
// block adds the warps' slices in warp order. A fixed order: bit-identical across runs.
template <class G>
__global__ void layernorm_backward_x_params_kernel(const G* dy, const float* x,
                                                   const float* weight, const float* mean,
                                                   const float* rstd, const float* res,
                                                   float* dx, __nv_bfloat16* dx16, int64_t rows,
                                                   int64_t C, int64_t rows_per_warp,
                                                   double* partial) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int n = static_cast<int>(C / 128);
  extern __shared__ float4 param_acc[];  // (kRowsPerBlock, 2, C / 4) float4
  float4* mine = param_acc + static_cast<int64_t>(warp) * 2 * (C / 4);  // this warp's slice
  for (int64_t i = lane; i < 2 * (C / 4); i += kWarp) mine[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp) * rows_per_warp;
  const int64_t last = min(rows, first + rows_per_warp);
  for (int64_t r = first; r < last; ++r)  // the whole warp takes each row
    layernorm_backward_vec_row(
        dy, x, weight, mean, rstd, res, dx, dx16, r, C, [&](const auto& draw, const auto& xh) {
#pragma unroll
          for (int i = 0; i < kMaxRowVectors; ++i) {
            if (i >= n) break;
            const int64_t q = lane + 32 * i;  // float4 column index: columns 4 q .. 4 q + 3
            const float4 d = widen_four(draw[i]), xv = xh[i];
            const float4 w = mine[q], b = mine[C / 4 + q];
            mine[q] = make_float4(w.x + d.x * xv.x, w.y + d.y * xv.y, w.z + d.z * xv.z,
                                  w.w + d.w * xv.w);
            mine[C / 4 + q] = make_float4(b.x + d.x, b.y + d.y, b.z + d.z, b.w + d.w);
          }
        });
  write_block_partials<2>(reinterpret_cast<const float*>(param_acc), C, partial);
}

// dx (rows, C) = [res +] rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)), g = weight * dy; dy
// stored as G (y's dtype: T, or bf16 for an f32 x), widened to T; res (rows, C) or null.
template <class T, class G>
__global__ void layernorm_backward_x_kernel(const G* dy, const T* x, const T* weight,
                                            const T* mean, const T* rstd, const T* res, T* dx,
                                            int64_t rows, int64_t C) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const T* xr = x + r * C;    // (C)
  const G* dyr = dy + r * C;  // (C)
  T* dxr = dx + r * C;        // (C)
  const T mu = mean[r], inv = rstd[r];
  T sum_g = T(0), sum_g_xhat = T(0);
  for (int64_t c = lane; c < C; c += kWarp) {
    const T g = weight[c] * to_acc(dyr[c]);
    sum_g += g;
    sum_g_xhat += g * ((xr[c] - mu) * inv);
  }
  const T mean_g = warp_sum(sum_g) / static_cast<T>(C);
  const T mean_g_xhat = warp_sum(sum_g_xhat) / static_cast<T>(C);
  for (int64_t c = lane; c < C; c += kWarp) {
    const T g = weight[c] * to_acc(dyr[c]);
    const T xhat = (xr[c] - mu) * inv;
    const T v = inv * (g - mean_g - xhat * mean_g_xhat);
    dxr[c] = res ? add_exact(res[r * C + c], v) : v;
  }
}

// acc[0] += dy * xhat (weight), acc[1] += dy (bias) at (r, c); dy stored as G.
template <class T, class G>
struct LayerNormParamTerm {
  const G* dy;    // (rows, C)
  const T* x;     // (rows, C)
  const T* mean;  // (rows)
  const T* rstd;  // (rows)
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, T* acc) const {
    const T g = to_acc(dy[r * C + c]);
    acc[0] += g * ((x[r * C + c] - mean[r]) * rstd[r]);
    acc[1] += g;
  }
};

// Runs layernorm_forward_kernel; delta and sum (..., C) undefined for the plain norm.
void launch_layernorm_forward(const Tensor& x, const Tensor& delta, Tensor* sum,
                              const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                              Tensor& mean, Tensor& rstd) {
  dispatch_float(x.dtype(), "layernorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t C = x.size(-1), rows = x.numel() / C;
    if (rows == 0) return;
    auto launch = [&](auto* py, const auto* pdelta) {  // y (rows, C) as T or bf16; delta
      using Y = std::remove_pointer_t<decltype(py)>;
      using D = std::remove_cv_t<std::remove_pointer_t<decltype(pdelta)>>;
      auto kernel = layernorm_forward_kernel<T, Y, D>;
      if constexpr (std::is_same_v<T, float>) {
        if (C % 128 == 0 && C / 128 <= kMaxRowVectors &&
            aligned16({x.raw_data(), pdelta, sum ? sum->raw_data() : nullptr, weight.raw_data(),
                       bias.defined() ? bias.raw_data() : nullptr, y.raw_data()}))
          kernel = norm_forward_vec_kernel<true, Y, D>;  // the row in registers
      }
      kernel<<<row_blocks(rows), kRowThreads, 0, stream()>>>(
          x.data<T>(),                                  // (rows, C)
          pdelta,                                       // (rows, C) as T or bf16, or none
          sum ? sum->data<T>() : nullptr,               // (rows, C) or none
          weight.data<T>(),                             // (C)
          bias.defined() ? bias.data<T>() : nullptr,    // (C) or none
          py,                                           // (rows, C)
          mean.data<T>(),                               // (rows)
          rstd.data<T>(),                               // (rows)
          rows, C, static_cast<T>(eps));
    };
    with_output_and_delta<T>(y, delta, launch);
    SINKLAB_KERNEL_CHECK("layernorm forward");
  });
}

void layernorm_forward_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            Tensor& y, Tensor& mean, Tensor& rstd) {
  launch_layernorm_forward(x, Tensor(), nullptr, weight, bias, eps, y, mean, rstd);
}

void add_layernorm_forward_cuda(const Tensor& x, const Tensor& delta, const Tensor& weight,
                                const Tensor& bias, double eps, Tensor& sum, Tensor& y,
                                Tensor& mean, Tensor& rstd) {
  launch_layernorm_forward(x, delta, &sum, weight, bias, eps, y, mean, rstd);
}

void layernorm_backward_cuda(const Tensor& grad, const Tensor& x, const Tensor& weight,
                             const Tensor& mean, const Tensor& rstd, const Tensor* residual,
                             Tensor* grad_x, Tensor* grad_x_operand, Tensor* grad_weight,
                             Tensor* grad_bias) {
  dispatch_float(x.dtype(), "layernorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t C = x.size(-1), rows = x.numel() / C;
    const T* px = x.data<T>();        // (rows, C)
    const T* pmean = mean.data<T>();  // (rows)
    const T* prstd = rstd.data<T>();  // (rows)
    auto run = [&](const auto* pdy) {  // dy (rows, C) as T or bf16
      using G = std::remove_cv_t<std::remove_pointer_t<decltype(pdy)>>;
      bool params_done = false;  // the row kernel also summed the weight's and bias's gradients
      if (grad_x && rows > 0) {
        const T* pres = residual ? residual->data<T>() : nullptr;  // (rows, C) or none
        T* pdx = grad_x->data<T>();                                // (rows, C)
        bool in_registers = false;  // the row kernel, which also writes grad_x_operand
        if constexpr (std::is_same_v<T, float>) {
          // (rows, C) bf16 copy of dx, if asked for
          auto* pdx16 = grad_x_operand ? static_cast<__nv_bfloat16*>(grad_x_operand->raw_data())
                                       : nullptr;
          in_registers = C % 128 == 0 && C / 128 <= kMaxRowVectors &&
                         aligned16({pdy, px, weight.raw_data(), pres, pdx, pdx16});
          if (in_registers && ops::fused_norm_param_grads && (grad_weight || grad_bias)) {
            // The weight's and bias's gradients from the same read of dy and x: partials a
            // block (2, blocks, C), then column_finish.
            const int64_t rows_per_warp = param_batches_per_warp(rows);
            const int64_t per_block = static_cast<int64_t>(kRowsPerBlock) * rows_per_warp;
            const int64_t blocks = (rows + per_block - 1) / per_block;
            const size_t shared = static_cast<size_t>(kRowsPerBlock) * 2 * C * sizeof(float);
            static const bool opted = [] {  // rows of up to 1024: 64 KB, past the default 48
              SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(
                  layernorm_backward_x_params_kernel<G>,
                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                  static_cast<int>(kRowsPerBlock * 2 * 128 * kMaxRowVectors * sizeof(float))));
              return true;
            }();
            (void)opted;
            Tensor scratch = Tensor::empty({2, blocks, C}, DType::F64, x.device());  // partials
            layernorm_backward_x_params_kernel<G>
                <<<static_cast<unsigned>(blocks), kRowThreads, shared, stream()>>>(
                    pdy, px, weight.data<T>(), pmean, prstd, pres, pdx, pdx16, rows, C,
                    rows_per_warp, scratch.data<double>());
            SINKLAB_KERNEL_CHECK("layernorm backward (x, weight, bias)");
            column_finish<T, 2>(scratch.data<double>(), blocks, C,
                                grad_weight ? grad_weight->data<T>() : nullptr,
                                grad_bias ? grad_bias->data<T>() : nullptr);
            params_done = true;
            ops::count_norm_param_grads_fused();
          } else if (in_registers) {
            layernorm_backward_x_vec_kernel<G><<<row_blocks(rows), kRowThreads, 0, stream()>>>(
                pdy, px, weight.data<T>(), pmean, prstd, pres, pdx, pdx16, rows, C);
          }
        }
        if (!in_registers)
          layernorm_backward_x_kernel<T, G><<<row_blocks(rows), kRowThreads, 0, stream()>>>(
              pdy, px, weight.data<T>() /* (C) */, pmean, prstd, pres, pdx, rows, C);
        SINKLAB_KERNEL_CHECK("layernorm backward (x)");
        if (grad_x_operand && !in_registers) round_operand(*grad_x, *grad_x_operand);
      }
      if ((grad_weight || grad_bias) && !params_done) {
        T* pdw = grad_weight ? grad_weight->data<T>() : nullptr;  // (C)
        T* pdb = grad_bias ? grad_bias->data<T>() : nullptr;      // (C)
        column_sums<T, 2>(rows, C, LayerNormParamTerm<T, G>{pdy, px, pmean, prstd, C}, pdw, pdb,
                          x.device(), "layernorm backward (weight, bias)");
      }
    };
    with_norm_output<T>(grad, run);
  });
}

// ---------------------------------------------------------------------------------------------
// RMSNorm and head-wise RMSNorm: rows of D, gain (P) or null, row r uses gain[(r * D) % P + d].

// x, y (rows, D); gain (P) or null; rstd (rows). One warp per row, math in T. x is stored as X:
// T, or bf16 (head-wise RMSNorm of cuDNN's bf16 attention output, T = f32; no delta then); delta
// as Dl: T, or bf16 for an f32 x (ops::bf16_branch_outputs); y as
// Y: T, or bf16 for an f32 x (NormOutput::kOperandDType) or a bf16 x, rounded to nearest even.
template <class T, class X, class Y, class Dl>
__global__ void rmsnorm_forward_kernel(const X* x, const Dl* delta, T* sum_out, const T* gain, Y* y,
                                       T* rstd, int64_t rows, int64_t D, int64_t P, T eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const X* xr = x + r * D;  // (D) x, or x + delta
  if constexpr (std::is_same_v<X, T>) xr = residual_row(x, delta, sum_out, r, D, lane);

  Y* yr = y + r * D;                                    // (D)
  const T* gr = gain ? gain + (r * D) % P : nullptr;    // (D) slice of the gain
  T sq = T(0);
  for (int64_t d = lane; d < D; d += kWarp) sq += to_acc(xr[d]) * to_acc(xr[d]);
  const T inv = inv_sqrt(warp_sum(sq) / static_cast<T>(D) + eps);
  if (lane == 0) rstd[r] = inv;
  for (int64_t d = lane; d < D; d += kWarp)
    yr[d] = from_acc<Y>(to_acc(xr[d]) * inv * (gr ? gr[d] : T(1)));
}

// dx = r * g - (r^3 / D) * x * sum_d(x_d g_d), g = gain * dy, r = rstd. One warp per row, math
// in T. dy stored as G (y's dtype), x and dx as X (T, or bf16 for a bf16 x), widened to T.
template <class T, class X, class G>
__global__ void rmsnorm_backward_x_kernel(const G* dy, const X* x, const T* gain, const T* rstd,
                                          const X* res, X* dx, int64_t rows, int64_t D,
                                          int64_t P) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const X* xr = x + r * D;                              // (D)
  const G* dyr = dy + r * D;                            // (D)
  X* dxr = dx + r * D;                                  // (D)
  const T* gr = gain ? gain + (r * D) % P : nullptr;    // (D) slice of the gain
  const T inv = rstd[r];
  T dot = T(0);
  for (int64_t d = lane; d < D; d += kWarp)
    dot += to_acc(xr[d]) * (to_acc(dyr[d]) * (gr ? gr[d] : T(1)));
  const T coef = inv * inv * inv * warp_sum(dot) / static_cast<T>(D);
  for (int64_t d = lane; d < D; d += kWarp) {
    const T g = to_acc(dyr[d]) * (gr ? gr[d] : T(1));
    const T v = inv * g - coef * to_acc(xr[d]);
    dxr[d] = from_acc<X>(res ? add_exact(to_acc(res[r * D + d]), v) : v);
  }
}

// Viewing the flat x (n) as (n / P, P): acc[0] += dy * x * rstd[i / D] at i = q * P + p; dy
// stored as G, x as X. P is a multiple of D (the gain repeats along rows of D), so
// i / D = q * (P / D) + p / D: no 64-bit division per element.
template <class T, class X, class G>
struct RmsNormGainTerm {
  const G* dy;    // (n)
  const X* x;     // (n)
  const T* rstd;  // (n / D)
  int64_t P;
  int64_t rows_per_q;  // P / D
  int D;
  __device__ void operator()(int64_t q, int64_t p, T* acc) const {
    const int64_t i = q * P + p;
    acc[0] += to_acc(dy[i]) * to_acc(x[i]) * rstd[q * rows_per_q + static_cast<int>(p) / D];
  }
};

// dispatch_float on the norm's math type: f32 for a bf16 x (body gets float{} and x's pointer as
// bf16), else x's own dtype.
template <class TensorRef, class Body>
void with_norm_input(TensorRef& x, const char* op, Body&& body) {
  using Bf16 = std::conditional_t<std::is_const_v<TensorRef>, const __nv_bfloat16, __nv_bfloat16>;
  if (x.dtype() == DType::BF16) {
    body(float{}, static_cast<Bf16*>(x.raw_data()));
    return;
  }
  dispatch_float(x.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    body(zero, x.template data<T>());
  });
}

// RMSNorm rows held in registers, math in f32 (x f32 or bf16): a row of D = 8 G n <= 1024
// elements belongs to a group of G lanes (G a power of two <= 32, 32 / G rows a warp), lane l
// holding the 8-element chunks l + G i, i < n <= kMaxChunks: every load and store moves 16
// bytes (8 bf16) or 32 (8 f32), and a warp reads whole rows. Head-wise RMSNorm's rows of HS = 64 bf16 are 8 lanes; an
// f32 row of 768 is 32 lanes of 3 chunks. The sums run in another order than the warp-per-row
// kernels (same formulas).
constexpr int kChunk = 8;       // elements a lane moves at once
constexpr int kMaxChunks = 4;   // D <= 8 * 32 * 4 = 1024
static_assert(kMaxChunks == 4, "rmsnorm forward's launch instantiates 1 to 4 chunks a lane");

// A chunk as loaded (two 16-byte loads of f32, one of bf16), and widened to f32 apart, so that
// a row's loads can all be issued before the first widening.
struct F32Chunk {
  float4 a, b;
};
template <class S> struct ChunkOf;
template <> struct ChunkOf<float> { using type = F32Chunk; };
template <> struct ChunkOf<__nv_bfloat16> { using type = uint4; };
__device__ __forceinline__ F32Chunk load_raw_chunk(const float* p) {
  return {reinterpret_cast<const float4*>(p)[0], reinterpret_cast<const float4*>(p)[1]};
}
__device__ __forceinline__ uint4 load_raw_chunk(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint4*>(p);
}
__device__ __forceinline__ void widen_chunk(const F32Chunk& c, float (&v)[kChunk]) {
  v[0] = c.a.x, v[1] = c.a.y, v[2] = c.a.z, v[3] = c.a.w;
  v[4] = c.b.x, v[5] = c.b.y, v[6] = c.b.z, v[7] = c.b.w;
}
__device__ __forceinline__ void widen_chunk(const uint4& raw, float (&v)[kChunk]) {
  const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int j = 0; j < kChunk / 2; ++j) {
    const float2 f = __bfloat1622float2(pairs[j]);
    v[2 * j] = f.x, v[2 * j + 1] = f.y;
  }
}
template <class S>
__device__ __forceinline__ void load_chunk(const S* p, float (&v)[kChunk]) {
  widen_chunk(load_raw_chunk(p), v);
}
__device__ __forceinline__ void store_chunk(float* p, const float (&v)[kChunk]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store_chunk(__nv_bfloat16* p, const float (&v)[kChunk]) {
  uint4 raw;
  auto* pairs = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int j = 0; j < kChunk / 2; ++j) pairs[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
  *reinterpret_cast<uint4*>(p) = raw;  // rounded to nearest even
}

// Sum over the G lanes of a group (xor offsets below G stay inside the aligned group); every
// lane of the warp takes part.
__device__ __forceinline__ float group_sum(float v, int G) {
  for (int offset = G / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The rows' geometry: G lanes a row, n chunks a lane.
struct RowGroups {
  int G = 0, n = 0;
};

// Whether rows of D elements fit the grouped kernels, and how (G = 0 when they do not).
RowGroups row_groups(int64_t D) {
  if (D % kChunk != 0) return {};
  const int64_t chunks = D / kChunk;
  if (chunks <= kWarp && (chunks & (chunks - 1)) == 0) return {static_cast<int>(chunks), 1};
  if (chunks % kWarp == 0 && chunks / kWarp <= kMaxChunks)
    return {kWarp, static_cast<int>(chunks / kWarp)};
  return {};
}

unsigned group_blocks(int64_t rows, int G) {
  const int64_t rows_per_block = static_cast<int64_t>(kRowsPerBlock) * (kWarp / G);
  return static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
}

// The value a float becomes where it is stored as Y (rounded to nearest even for bf16).
__device__ __forceinline__ float as_stored(float v, float*) { return v; }
__device__ __forceinline__ float as_stored(float v, __nv_bfloat16*) {
  return __bfloat162float(__float2bfloat16_rn(v));
}

// The row statistics of a row held by a group of G lanes, N chunks a lane (value(i, j) is element
// j of chunk gl + G i; zero on inactive lanes, which still join the shuffles), into o (5) by the
// group's first lane when `write`: row_statistics' columns and formulas (the mean first, then the
// deviations from it), summed in the group's order.
template <int N, class Value>
__device__ __forceinline__ void group_row_statistics(Value&& value, int G, int64_t D, bool write,
                                                     float* o) {
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < kChunk; ++j) sum += value(i, j);
  const float mean = group_sum(sum, G) / static_cast<float>(D);
  float dev = 0.f, sq = 0.f, sum_abs = 0.f, max_abs = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      const float e = value(i, j);
      dev += (e - mean) * (e - mean);
      sq += e * e;
      sum_abs += fabsf(e);
      max_abs = fmaxf(max_abs, fabsf(e));
    }
  dev = group_sum(dev, G);
  sq = group_sum(sq, G);
  sum_abs = group_sum(sum_abs, G);
  for (int offset = G / 2; offset > 0; offset >>= 1)
    max_abs = fmaxf(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
  if (write) {
    o[ops::kRowMean] = mean;
    o[ops::kRowVariance] = dev / static_cast<float>(D);
    o[ops::kRowNorm] = sqrtf(sq);
    o[ops::kRowMeanAbs] = sum_abs / static_cast<float>(D);
    o[ops::kRowMaxAbs] = max_abs;
  }
}

// x, y (rows, D) stored as X, Y (f32 or bf16), D = 8 G N; gain (P) or null, row r uses
// gain[(r D) % P + d]; rstd (rows). kStats: x_stats and y_stats (rows, 5) get the row statistics
// of x and of y as stored (ops::NormRowStatistics), from the registers that hold the row.
template <class X, class Y, int N, bool kStats>
__global__ void rmsnorm_groups_forward_kernel(const X* x, const float* gain, Y* y, float* rstd,
                                              float* x_stats, float* y_stats, int64_t rows,
                                              int64_t D, int64_t P, int G, float eps) {
  const int lane = threadIdx.x % kWarp, gl = lane % G;
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp) *
                        (kWarp / G) + lane / G;
  const bool active = r < rows;  // inactive lanes still join the shuffles
  float v[N][kChunk];
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (active) {
      load_chunk(x + r * D + (gl + G * i) * kChunk, v[i]);
    } else {
#pragma unroll
      for (int j = 0; j < kChunk; ++j) v[i][j] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < kChunk; ++j) sq += v[i][j] * v[i][j];
  }
  const float inv = inv_sqrt(group_sum(sq, G) / static_cast<float>(D) + eps);
  const float* gr = active && gain ? gain + (r * D) % P : nullptr;  // (D) slice of the gain
  float out[N][kChunk];  // y before it is stored
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const int64_t d0 = (gl + G * i) * kChunk;
#pragma unroll
    for (int j = 0; j < kChunk; ++j) out[i][j] = v[i][j] * inv * (gr ? gr[d0 + j] : 1.f);
  }
  if constexpr (kStats) {
    const bool write = active && gl == 0;
    group_row_statistics<N>([&](int i, int j) { return v[i][j]; }, G, D, write,
                            x_stats + r * ops::kRowStats);
    group_row_statistics<N>([&](int i, int j) { return as_stored(out[i][j], y); }, G, D, write,
                            y_stats + r * ops::kRowStats);
  }
  if (!active) return;
  if (gl == 0) rstd[r] = inv;
#pragma unroll
  for (int i = 0; i < N; ++i) store_chunk(y + r * D + (gl + G * i) * kChunk, out[i]);
}

// One row r of the grouped RMSNorm backward as loaded by a group of G lanes, N chunks a lane at
// most (g.n of them used): the lane's chunks of x, dy and the residual gradient res, and the
// row's rstd. Every load of the row is issued here, before any arithmetic, so that all are in
// flight at once (widening dy, loading res between the stores of dx, or reading rstd after the
// group's sum had made each wait for the one before).
template <class X, class Gy, int N>
struct GroupedRowLoad {
  typename ChunkOf<X>::type x[N], res[N];
  typename ChunkOf<Gy>::type dy[N];
  float rstd;
};

template <int N, class X, class Gy>
__device__ __forceinline__ GroupedRowLoad<X, Gy, N> load_grouped_row(const Gy* dy, const X* x,
                                                                     const float* rstd,
                                                                     const X* res, int64_t r,
                                                                     int64_t rows, int64_t D,
                                                                     RowGroups g) {
  GroupedRowLoad<X, Gy, N> row{};
  if (r >= rows) return row;  // an inactive lane: nothing read, nothing used
  const int gl = (threadIdx.x % kWarp) % g.G;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (i >= g.n) break;
    const int64_t at = r * D + (gl + g.G * i) * kChunk;
    row.x[i] = load_raw_chunk(x + at);
    row.dy[i] = load_raw_chunk(dy + at);
    if (res) row.res[i] = load_raw_chunk(res + at);
  }
  row.rstd = rstd[r];
  return row;
}

// Row r of the grouped RMSNorm backward from its loads (inactive lanes, r >= rows, still join
// the group's shuffle and then return): dx = [res +] r * g - (r^3 / D) * x * sum_d(x_d g_d),
// g = gain * dy, r = rstd; dy stored as Gy (y's dtype), x, res (or null) and dx as X. dx16
// (rows, D) or null (an f32 x only): dx rounded to nearest even as well (the products' copy of a
// folded residual gradient, ops::remember_operand). An active lane then calls after(dy, xv,
// inv): its chunks of dy as loaded, of x widened, and the row's rstd.
template <int N, class X, class Gy, class After>
__device__ __forceinline__ void finish_grouped_row(const GroupedRowLoad<X, Gy, N>& row,
                                                   const float* gain, bool with_res, X* dx,
                                                   __nv_bfloat16* dx16, int64_t r, int64_t rows,
                                                   int64_t D, int64_t P, RowGroups g,
                                                   After&& after) {
  const int gl = (threadIdx.x % kWarp) % g.G;
  const bool active = r < rows;
  const float* gr = active && gain ? gain + (r * D) % P : nullptr;  // (D) slice of the gain
  float xv[N][kChunk], gv[N][kChunk];  // x and gain * dy
  float dot = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (i >= g.n) break;
    const int64_t d0 = (gl + g.G * i) * kChunk;
    if (active) {
      widen_chunk(row.x[i], xv[i]);
      widen_chunk(row.dy[i], gv[i]);
    }
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if (active && gr) gv[i][j] *= gr[d0 + j];
      dot += active ? xv[i][j] * gv[i][j] : 0.f;
    }
  }
  dot = group_sum(dot, g.G);
  if (!active) return;
  const float inv = row.rstd;
  const float coef = inv * inv * inv * dot / static_cast<float>(D);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (i >= g.n) break;
    const int64_t at = r * D + (gl + g.G * i) * kChunk;
    float out[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) out[j] = inv * gv[i][j] - coef * xv[i][j];
    if (with_res) {
      float rv[kChunk];
      widen_chunk(row.res[i], rv);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) out[j] = add_exact(rv[j], out[j]);
    }
    store_chunk(dx + at, out);
    if (dx16) store_chunk(dx16 + at, out);
  }
  after(row.dy, xv, inv);
}

// RMSNorm's backward for rows of D = 8 G n, 32 / G rows a warp (one grouped row a lane group).
template <class X, class Gy>
__global__ void rmsnorm_groups_backward_x_kernel(const Gy* dy, const X* x, const float* gain,
                                                 const float* rstd, const X* res, X* dx,
                                                 __nv_bfloat16* dx16, int64_t rows, int64_t D,
                                                 int64_t P, RowGroups g) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp) *
                        (kWarp / g.G) + lane / g.G;
  const auto row = load_grouped_row<kMaxChunks>(dy, x, rstd, res, r, rows, D, g);
  finish_grouped_row(row, gain, res != nullptr, dx, dx16, r, rows, D, P, g,
                     [](const auto&, const auto&, float) {});
}

// The gain's gradient in the same pass (ops::fused_norm_param_grads), where a warp's 32 / G rows
// use distinct slices of the gain (32 / G <= P / D: head-wise RMSNorm's 4 heads of 12, or a
// block norm's one row a warp) and the gain is at most kMaxGainPartial long. Each warp takes
// batches_per_warp consecutive batches of 32 / G rows and adds dy * x * rstd into its own slice
// of dynamic shared memory (kRowsPerBlock, P) f32 (a lane's columns change from batch to batch:
// the warp synchronises between them); then the block adds the warps' slices in warp order into
// partial (1, gridDim.x, P) f64, for column_finish. A fixed order: bit-identical across runs.
// N: chunks a lane at most; U: batches whose loads are issued together before the first is
// finished (in batch order, as one at a time would). Rows of one chunk a lane (head-wise
// RMSNorm's rows of 64: 1 KB a warp's batch) take U = 4: one batch at a time had left too few
// bytes in flight (1.0 TB/s, 153 us a 152M layer on an H100).
constexpr int64_t kMaxGainPartial = 1536;  // 48 KB of slices a block

template <class X, class Gy, int N, int U>
__global__ void rmsnorm_groups_backward_params_kernel(const Gy* dy, const X* x,
                                                      const float* gain, const float* rstd,
                                                      const X* res, X* dx, __nv_bfloat16* dx16,
                                                      int64_t rows, int64_t D, int64_t P,
                                                      RowGroups g, int64_t batches_per_warp,
                                                      double* partial) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, gl = lane % g.G;
  extern __shared__ float4 gain_shared[];  // (kRowsPerBlock, P) f32, 16-byte aligned
  float* gain_acc = reinterpret_cast<float*>(gain_shared);
  float* mine = gain_acc + static_cast<int64_t>(warp) * P;  // this warp's slice
  for (int64_t i = lane; i < P; i += kWarp) mine[i] = 0.f;
  __syncwarp();
  const int64_t first =
      (static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp) * batches_per_warp;
  const int64_t end = first + batches_per_warp;
  for (int64_t batch0 = first; batch0 < end; batch0 += U) {  // warp-uniform
    GroupedRowLoad<X, Gy, N> loads[U];  // batch0 + u's row of this lane
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (batch0 + u < end)
        loads[u] = load_grouped_row<N>(dy, x, rstd, res, (batch0 + u) * (kWarp / g.G) + lane / g.G,
                                       rows, D, g);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (batch0 + u >= end) break;
      const int64_t r = (batch0 + u) * (kWarp / g.G) + lane / g.G;
      finish_grouped_row(
          loads[u], gain, res != nullptr, dx, dx16, r, rows, D, P, g,
          [&](const auto& draw, const float (&xv)[N][kChunk], float inv) {
            // (D / 4) this row's slice of the gain, as float4s (16-byte aligned: P and D are
            // multiples of 8): two vector adds a chunk instead of eight scalar ones, which met
            // 8-way bank conflicts (a lane's 8 consecutive columns, lanes 8 columns apart)
            float4* columns = reinterpret_cast<float4*>(mine + (r * D) % P);
#pragma unroll
            for (int i = 0; i < N; ++i) {
              if (i >= g.n) break;
              const int64_t q0 = (gl + g.G * i) * (kChunk / 4);
              float d[kChunk];
              widen_chunk(draw[i], d);
#pragma unroll
              for (int h = 0; h < kChunk / 4; ++h) {
                const float4 a = columns[q0 + h];
                const float* e = d + 4 * h;
                const float* v = xv[i] + 4 * h;
                columns[q0 + h] = make_float4(a.x + e[0] * v[0] * inv, a.y + e[1] * v[1] * inv,
                                              a.z + e[2] * v[2] * inv, a.w + e[3] * v[3] * inv);
              }
            }
          });
      __syncwarp();  // the next batch's lanes add to columns this batch's other lanes wrote
    }
  }
  write_block_partials<1>(gain_acc, P, partial);
}

// RMSNorm's forward: the row in registers (norm_forward_vec_kernel, f32 rows of 128n with a gain
// per row, with or without the add), grouped lanes (rmsnorm_groups_forward_kernel, rows without
// the add, e.g. head-wise RMSNorm's rows of 64) or one warp per row (rmsnorm_forward_kernel,
// everything else). delta and sum (..., D) undefined for the plain norm (and for a bf16 x).
// stats (or null): filled by the grouped kernel, or by row_statistics after any other.
void launch_rmsnorm_forward(const Tensor& x, const Tensor& delta, Tensor* sum, const Tensor& gain,
                            double eps, Tensor& y, Tensor& rstd,
                            ops::NormRowStatistics* stats = nullptr) {
  with_norm_input(x, "rmsnorm", [&](auto zero, const auto* px) {  // x (rows, D) as T or bf16
    using T = decltype(zero);
    using X = std::remove_cv_t<std::remove_pointer_t<decltype(px)>>;
    const int64_t D = x.size(-1), rows = x.numel() / D;
    const int64_t P = gain.defined() ? gain.numel() : D;
    if (rows == 0) return;
    auto launch = [&](auto* py, const auto* pdelta) {  // y, delta (rows, D) as T or bf16
      using Y = std::remove_pointer_t<decltype(py)>;
      using Dl = std::remove_cv_t<std::remove_pointer_t<decltype(pdelta)>>;
      if constexpr (std::is_same_v<T, float> && std::is_same_v<X, float>) {
        // f32 rows of D = 128 n with a gain per row (LLaMA's norms): the row in registers.
        if (D % 128 == 0 && D / 128 <= kMaxRowVectors && P == D &&
            aligned16({px, pdelta, sum ? sum->raw_data() : nullptr,
                       gain.defined() ? gain.raw_data() : nullptr, py})) {
          norm_forward_vec_kernel<false, Y, Dl><<<row_blocks(rows), kRowThreads, 0, stream()>>>(
              px,                                           // (rows, D)
              pdelta,                                       // (rows, D) as T or bf16, or none
              sum ? sum->data<T>() : nullptr,               // (rows, D) or none
              gain.defined() ? gain.data<T>() : nullptr,    // (D) or none
              nullptr, py,                                  // no bias; y (rows, D)
              nullptr, rstd.data<T>(),                      // no mean; rstd (rows)
              rows, D, static_cast<T>(eps));
          return;
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        // rows without a residual add (head-wise RMSNorm, rmsnorm): grouped lanes
        const RowGroups groups = row_groups(D);
        if (!delta.defined() && groups.G > 0 && aligned16({px, py})) {
          // The chunks a lane holds and whether it writes the statistics, at compile time: the
          // row's registers sized exactly (a run-time count had kept room for kMaxChunks).
          auto grouped = [&](auto chunks, auto with_stats) {
            rmsnorm_groups_forward_kernel<X, Y, decltype(chunks)::value,
                                          decltype(with_stats)::value>
                <<<group_blocks(rows, groups.G), kRowThreads, 0, stream()>>>(
                    px, gain.defined() ? gain.data<T>() : nullptr, py, rstd.data<T>(),
                    stats ? stats->input.data<T>() : nullptr,   // (rows, 5) or none
                    stats ? stats->output.data<T>() : nullptr,  // (rows, 5) or none
                    rows, D, P, groups.G, static_cast<T>(eps));
          };
          auto with_chunks = [&](auto with_stats) {
            switch (groups.n) {
              case 1: grouped(std::integral_constant<int, 1>{}, with_stats); break;
              case 2: grouped(std::integral_constant<int, 2>{}, with_stats); break;
              case 3: grouped(std::integral_constant<int, 3>{}, with_stats); break;
              default: grouped(std::integral_constant<int, 4>{}, with_stats); break;
            }
          };
          if (stats)
            with_chunks(std::true_type{});
          else
            with_chunks(std::false_type{});
          stats = nullptr;  // written
          return;
        }
      }
      rmsnorm_forward_kernel<T, X, Y, Dl><<<row_blocks(rows), kRowThreads, 0, stream()>>>(
          px,                                           // (rows, D)
          pdelta,                                       // (rows, D) as T or bf16, or none
          sum ? sum->data<T>() : nullptr,               // (rows, D) or none
          gain.defined() ? gain.data<T>() : nullptr,    // (P) or none
          py,                                           // (rows, D)
          rstd.data<T>(),                               // (rows)
          rows, D, P, static_cast<T>(eps));
    };
    with_output_and_delta<T>(y, delta, launch);
    SINKLAB_KERNEL_CHECK("rmsnorm forward");
  });
  if (stats && x.numel() > 0) {  // a kernel without the statistics ran: read x and y once more
    const int64_t D = x.size(-1), rows = x.numel() / D;
    ops::row_statistics_kernels.forward(x.device())(x.reshape_view({rows, D}), stats->input);
    ops::row_statistics_kernels.forward(y.device())(y.reshape_view({rows, D}), stats->output);
  }
}

void rmsnorm_forward_cuda(const Tensor& x, const Tensor& gain, double eps, Tensor& y,
                          Tensor& rstd, ops::NormRowStatistics* stats) {
  launch_rmsnorm_forward(x, Tensor(), nullptr, gain, eps, y, rstd, stats);
}

void add_rmsnorm_forward_cuda(const Tensor& x, const Tensor& delta, const Tensor& gain, double eps,
                              Tensor& sum, Tensor& y, Tensor& rstd) {
  launch_rmsnorm_forward(x, delta, &sum, gain, eps, y, rstd);
}

void rmsnorm_backward_cuda(const Tensor& grad, const Tensor& x, const Tensor& gain,
                           const Tensor& rstd, const Tensor* residual, Tensor* grad_x,
                           Tensor* grad_x_operand, Tensor* grad_gain) {
  with_norm_input(x, "rmsnorm", [&](auto zero, const auto* px) {  // x (rows, D) as T or bf16
    using T = decltype(zero);
    using X = std::remove_cv_t<std::remove_pointer_t<decltype(px)>>;
    const int64_t n = x.numel(), D = x.size(-1), rows = n / D;
    const int64_t P = gain.defined() ? gain.numel() : D;
    const T* pg = gain.defined() ? gain.data<T>() : nullptr;    // (P) or none
    const T* prstd = rstd.data<T>();                            // (rows)
    with_norm_output<T>(grad, [&](const auto* pdy) {  // dy (rows, D) as T or bf16
      using G = std::remove_cv_t<std::remove_pointer_t<decltype(pdy)>>;
      bool gain_done = false;  // the row kernel also summed the gain's gradient
      if (grad_x && rows > 0) {
        X* pdx = static_cast<X*>(grad_x->raw_data());  // (rows, D), x's dtype
        const X* pres = residual ? static_cast<const X*>(residual->raw_data()) : nullptr;
        bool copy_written = false;  // grad_x_operand written by the grouped kernel
        bool grouped = false;
        if constexpr (std::is_same_v<T, float>) {  // f32 math: rows in registers where they fit
          const RowGroups groups = row_groups(D);
          // (rows, D) bf16 copy of an f32 dx, if asked for
          auto* pdx16 = grad_x_operand && std::is_same_v<X, float>
                            ? static_cast<__nv_bfloat16*>(grad_x_operand->raw_data())
                            : nullptr;
          grouped = groups.G > 0 && aligned16({pdy, px, pdx, pres, pdx16});
          const int64_t per_batch = grouped ? kWarp / groups.G : 0;  // rows a warp takes at once
          if (grouped && grad_gain && ops::fused_norm_param_grads && P <= kMaxGainPartial &&
              per_batch <= P / D) {  // a warp's rows on distinct slices of the gain
            // The gain's gradient from the same read of dy and x: partials a block (1, blocks,
            // P), then column_finish (param_batches_per_warp).
            const int64_t batches = (rows + per_batch - 1) / per_batch;
            const int64_t per_warp = param_batches_per_warp(batches);
            const int64_t per_block = static_cast<int64_t>(kRowsPerBlock) * per_warp;
            const int64_t blocks = (batches + per_block - 1) / per_block;
            Tensor scratch = Tensor::empty({1, blocks, P}, DType::F64, x.device());  // partials
            auto launch = [&](auto kernel) {
              kernel<<<static_cast<unsigned>(blocks), kRowThreads,
                       static_cast<size_t>(kRowsPerBlock) * P * sizeof(float), stream()>>>(
                  pdy, px, pg, prstd, pres, pdx, pdx16, rows, D, P, groups, per_warp,
                  scratch.data<double>());
            };
            if (groups.n == 1)  // short rows (head-wise RMSNorm's): four batches in flight
              launch(rmsnorm_groups_backward_params_kernel<X, G, 1, 4>);
            else
              launch(rmsnorm_groups_backward_params_kernel<X, G, kMaxChunks, 1>);
            SINKLAB_KERNEL_CHECK("rmsnorm backward (x, gain)");
            column_finish<T, 1>(scratch.data<double>(), blocks, P, grad_gain->data<T>(),
                                static_cast<T*>(nullptr));
            gain_done = true;
            ops::count_norm_param_grads_fused();
          } else if (grouped) {
            rmsnorm_groups_backward_x_kernel<X, G>
                <<<group_blocks(rows, groups.G), kRowThreads, 0, stream()>>>(
                    pdy, px, pg, prstd, pres, pdx, pdx16, rows, D, P, groups);
          }
          copy_written = grouped && pdx16 != nullptr;
        }
        if (!grouped)
          rmsnorm_backward_x_kernel<T, X, G><<<row_blocks(rows), kRowThreads, 0, stream()>>>(
              pdy, px, pg, prstd, pres, pdx, rows, D, P);
        SINKLAB_KERNEL_CHECK("rmsnorm backward (x)");
        if (grad_x_operand && !copy_written) round_operand(*grad_x, *grad_x_operand);
      }
      if (grad_gain && !gain_done) {
        T* pdg = grad_gain->data<T>();  // (P)
        column_sums<T, 1>(n / P, P,
                          RmsNormGainTerm<T, X, G>{pdy, px, prstd, P, P / D, static_cast<int>(D)},
                          pdg,
                          static_cast<T*>(nullptr), x.device(), "rmsnorm backward (gain)");
      }
    });
  });
}

}  // namespace

void install_norm_kernels() {
  ops::layernorm_kernels.cuda_forward = layernorm_forward_cuda;
  ops::add_layernorm_kernels.cuda_forward = add_layernorm_forward_cuda;
  ops::layernorm_kernels.cuda_backward = layernorm_backward_cuda;
  ops::rmsnorm_kernels.cuda_forward = rmsnorm_forward_cuda;
  ops::add_rmsnorm_kernels.cuda_forward = add_rmsnorm_forward_cuda;
  ops::rmsnorm_kernels.cuda_backward = rmsnorm_backward_cuda;
  ops::headwise_rmsnorm_kernels.cuda_forward = rmsnorm_forward_cuda;
  ops::headwise_rmsnorm_kernels.cuda_backward = rmsnorm_backward_cuda;
}

}  // namespace sinklab::cuda
