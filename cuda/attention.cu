// CUDA twins of ops/cpu/attention: causal flash attention (softmax or sigmoid, per-query first
// visible key for isolated positions), its backward, and the two probes (materialised
// probabilities, key mass from the saved lse). f32 and f64; every product and sum is in the
// tensor's type (f32 accumulation for f32, f64 for f64). Layout (B, T, NH, HS), contiguous.
//
// Forward (flash style, no T x T buffer): one block of 256 threads (16 x 16) per (b, h, tile of
// BQ queries); key/value tiles of BK rows are streamed through shared memory with an online
// softmax (running max m and sum l per query row). Thread (ty, tx) owns query rows ty + 16 i
// (i < RQ) of the tile: it computes the scores of those rows against keys tx + 16 j (j < RK),
// the row max/sum over the 16 threads of a row with xor shuffles (half a warp), and accumulates
// the output columns tx + 16 c (c < D/16) of its rows in registers. Writes out and lse (B, NH, T).
//
// Backward (deterministic, no atomics), probabilities recomputed from q, k and lse:
//   1. Dvec[b, h, t] = dO_t . O_t (softmax only): one warp per row.
//   2. dq: one block per (b, h, query tile), looping over key tiles: dS = P (dP - D) (softmax) or
//      P (1 - P) dP (sigmoid), dq += dS K.
//   3. dk, dv: one block per (b, h, key tile), looping over query tiles t >= k0: dv += P^T dO,
//      dk += dS^T Q.
// Each output element is summed by one thread in a fixed order: bit-identical across runs.
//
// Head size: the kernels are templated on D in {16, 32, 64, 128} (HS rounded up); shared tiles
// are zero-filled past HS so the dot products are exact sums over HS. Shared rows are padded to
// D + 1 (and BK + 1 / BQ + 1) elements so that the column-strided reads are conflict-free.
//
// Mask: query t sees keys first_key[t] <= j <= t. AttentionParams::first_key lives on the host;
// its device copy (int32 (T)) is uploaded once per distinct mask and cached (see
// device_first_key), so steady-state calls do no host-device transfer.
//
// f32 under Precision::BF16 with HS 64 or 128 runs the tensor-core kernels of
// cuda/attention_bf16.cu instead (same semantics, bf16 operands, fp32 accumulation).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <type_traits>
#include <vector>

#include "cuda/attention_bf16.h"
#include "cuda/attention_cudnn.h"
#include "cuda/cudnn_attention.h"
#include "cuda/check.h"
#include "cuda/storage_types.cuh"
#include "core/dispatch.h"
#include "cuda/runtime.h"
#include "ops/attention.h"
#include "ops/matmul.h"

namespace sinklab::cuda {

namespace {

constexpr int kThreads = 256;  // 16 x 16 threads in every tiled attention kernel
constexpr int kGroup = 16;     // threads sharing one tile row (half a warp)
constexpr int kMaxHeadSize = 128;

// ---------------------------------------------------------------------------------------------
// Device math in the tensor's type.

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }
__device__ __forceinline__ float dev_log(float x) { return logf(x); }
__device__ __forceinline__ double dev_log(double x) { return log(x); }
template <class T>
__device__ __forceinline__ T dev_sigmoid(T x) {
  return T(1) / (T(1) + dev_exp(-x));
}
template <class T>
__device__ __forceinline__ T neg_inf() {
  return -static_cast<T>(INFINITY);
}
template <class T>
__device__ __forceinline__ T dev_max(T a, T b) {
  return a > b ? a : b;
}

// Max / sum over the 16 threads of one tile row (lanes 0-15 or 16-31 of a warp). xor butterfly:
// every lane ends with bit-identical results (a + b == b + a). All 32 lanes must call it.
template <class T>
__device__ __forceinline__ T group_max(T v) {
  for (int offset = kGroup / 2; offset > 0; offset >>= 1)
    v = dev_max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
template <class T>
__device__ __forceinline__ T group_sum(T v) {
  for (int offset = kGroup / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Copies rows row0 .. row0 + ROWS - 1 of one (b, h) slice into shared memory (ROWS, LD), zero
// past T and past HS. src points at element (b, 0, h, 0) of a (B, T, NH, HS) tensor; consecutive
// rows are row_stride = NH * HS apart. Consecutive threads read consecutive columns (coalesced).
template <class T, int D, int ROWS, int LD>
__device__ __forceinline__ void load_tile(T* dst, const T* __restrict__ src, int row0, int Tn,
                                          int64_t row_stride, int HS) {
  for (int idx = threadIdx.x; idx < ROWS * D; idx += kThreads) {
    const int r = idx / D, d = idx % D;
    const int t = row0 + r;
    dst[r * LD + d] = (t < Tn && d < HS) ? src[static_cast<int64_t>(t) * row_stride + d] : T(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Tile shapes. RQ/RK: rows (queries) / columns (keys) of a tile per thread, so tiles are 16 * R.
// f64 uses smaller tiles to stay inside the 227 KB of shared memory per block at D = 128.

template <class T>
struct Tiles {
  static constexpr int fwd_rq = 4, fwd_rk = 2;  // forward: BQ 64, BK 32
  static constexpr int dq_rq = 4, dq_rk = 2;    // dq: BQ 64, BK 32
  static constexpr int kv_rk = 4, kv_rq = 2;    // dk/dv: BK 64, BQ 32
};
template <>
struct Tiles<double> {
  static constexpr int fwd_rq = 2, fwd_rk = 2;  // 32 x 32 everywhere
  static constexpr int dq_rq = 2, dq_rk = 2;
  static constexpr int kv_rk = 2, kv_rq = 2;
};

// Shared-memory bytes of each kernel (same formulas as the carving inside the kernels).
template <class T, int D, int RQ, int RK>
constexpr size_t forward_smem() {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1;
  // Qs (BQ, D+1), Ks (BK, D+1), Vs (BK, D), Ps (BQ, BK+1) in T; Fs (BQ) int.
  return (size_t(BQ) * LD + size_t(BK) * LD + size_t(BK) * D + size_t(BQ) * (BK + 1)) * sizeof(T) +
         size_t(BQ) * sizeof(int);
}
template <class T, int D, int RQ, int RK>
constexpr size_t dq_smem() {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1;
  // Qs, dOs (BQ, D+1), Ks, Vs (BK, D+1), dSs (BQ, BK+1), Ls, Ds (BQ) in T; Fs (BQ) int.
  return (2 * size_t(BQ) * LD + 2 * size_t(BK) * LD + size_t(BQ) * (BK + 1) + 2 * size_t(BQ)) *
             sizeof(T) +
         size_t(BQ) * sizeof(int);
}
template <class T, int D, int RK, int RQ>
constexpr size_t kv_smem() {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1;
  // Ks, Vs (BK, D+1), Qs, dOs (BQ, D+1), PT, dST (BK, BQ+1), Ls, Ds (BQ) in T; Fs (BQ) int.
  return (2 * size_t(BK) * LD + 2 * size_t(BQ) * LD + 2 * size_t(BK) * (BQ + 1) +
          2 * size_t(BQ)) *
             sizeof(T) +
         size_t(BQ) * sizeof(int);
}

// ---------------------------------------------------------------------------------------------
// Forward.

template <class T, int D, int RQ, int RK>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const int32_t* __restrict__ first_key,
                             T* __restrict__ out, T* __restrict__ lse, int Tn, int NH, int HS,
                             T scale, bool use_sigmoid) {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1, LDP = BK + 1, DC = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);             // (BQ, D+1) query tile
  T* Ks = Qs + BQ * LD;                               // (BK, D+1) key tile
  T* Vs = Ks + BK * LD;                               // (BK, D) value tile
  T* Ps = Vs + BK * D;                                // (BQ, BK+1) weights of the tile
  int* Fs = reinterpret_cast<int*>(Ps + BQ * LDP);    // (BQ) first visible key of each row

  const int tid = threadIdx.x, tx = tid % kGroup, ty = tid / kGroup;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;  // long (late) query tiles start first
  const int64_t rs = static_cast<int64_t>(NH) * HS;  // stride between positions
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * HS;

  load_tile<T, D, BQ, LD>(Qs, q + base, q0, Tn, rs, HS);
  for (int r = tid; r < BQ; r += kThreads) Fs[r] = q0 + r < Tn ? first_key[q0 + r] : INT_MAX;
  __syncthreads();
  int kmin = INT_MAX;  // first key any row of the tile sees (row 0 is valid: kmin <= q0)
  for (int r = 0; r < BQ; ++r) kmin = min(kmin, Fs[r]);
  const int kend = min(q0 + BQ, Tn);  // keys beyond the last query are masked for every row

  T m[RQ], l[RQ], o[RQ][DC];
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    m[i] = neg_inf<T>();
    l[i] = T(0);
#pragma unroll
    for (int c = 0; c < DC; ++c) o[i][c] = T(0);
  }

  for (int k0 = (kmin / BK) * BK; k0 < kend; k0 += BK) {
    __syncthreads();  // the previous tile's Ks, Vs, Ps are no longer read
    load_tile<T, D, BK, LD>(Ks, k + base, k0, Tn, rs, HS);
    load_tile<T, D, BK, D>(Vs, v + base, k0, Tn, rs, HS);
    __syncthreads();

    T s[RQ][RK];
#pragma unroll
    for (int i = 0; i < RQ; ++i)
#pragma unroll
      for (int j = 0; j < RK; ++j) s[i][j] = T(0);
#pragma unroll 8
    for (int d = 0; d < D; ++d) {
      T qv[RQ], kv[RK];
#pragma unroll
      for (int i = 0; i < RQ; ++i) qv[i] = Qs[(ty + 16 * i) * LD + d];
#pragma unroll
      for (int j = 0; j < RK; ++j) kv[j] = Ks[(tx + 16 * j) * LD + d];
#pragma unroll
      for (int i = 0; i < RQ; ++i)
#pragma unroll
        for (int j = 0; j < RK; ++j) s[i][j] += qv[i] * kv[j];
    }

#pragma unroll
    for (int i = 0; i < RQ; ++i) {
      const int r = ty + 16 * i, t = q0 + r, first = Fs[r];
      T p[RK];
      if (use_sigmoid) {
        T row_sum = T(0);
#pragma unroll
        for (int j = 0; j < RK; ++j) {
          const int key = k0 + tx + 16 * j;
          p[j] = (key >= first && key <= t) ? dev_sigmoid(s[i][j] * scale) : T(0);
          row_sum += p[j];
        }
        if (lse != nullptr) l[i] += group_sum(row_sum);  // the row sums, where asked for
      } else {
        T row_max = neg_inf<T>();
#pragma unroll
        for (int j = 0; j < RK; ++j) {
          const int key = k0 + tx + 16 * j;
          s[i][j] = (key >= first && key <= t) ? s[i][j] * scale : neg_inf<T>();
          row_max = dev_max(row_max, s[i][j]);
        }
        row_max = group_max(row_max);
        const T m_new = dev_max(m[i], row_max);
        // A row with nothing visible so far keeps m = -inf: use 0 as the reference so that
        // exp(-inf - 0) = 0 instead of exp(-inf + inf) = NaN.
        const T m_ref = m_new == neg_inf<T>() ? T(0) : m_new;
        const T alpha = dev_exp(m[i] - m_ref);  // rescales what was summed so far
        T row_sum = T(0);
#pragma unroll
        for (int j = 0; j < RK; ++j) {
          p[j] = dev_exp(s[i][j] - m_ref);  // 0 where masked (s = -inf)
          row_sum += p[j];
        }
        row_sum = group_sum(row_sum);
        l[i] = l[i] * alpha + row_sum;
        m[i] = m_new;
#pragma unroll
        for (int c = 0; c < DC; ++c) o[i][c] *= alpha;
      }
#pragma unroll
      for (int j = 0; j < RK; ++j) Ps[r * LDP + tx + 16 * j] = p[j];
    }
    __syncthreads();

#pragma unroll 4
    for (int c = 0; c < BK; ++c) {
      T vv[DC];
#pragma unroll
      for (int cc = 0; cc < DC; ++cc) vv[cc] = Vs[c * D + tx + 16 * cc];
#pragma unroll
      for (int i = 0; i < RQ; ++i) {
        const T pv = Ps[(ty + 16 * i) * LDP + c];
#pragma unroll
        for (int cc = 0; cc < DC; ++cc) o[i][cc] += pv * vv[cc];
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    const int t = q0 + ty + 16 * i;
    if (t >= Tn) continue;
    // l >= exp(0) > 0 for every valid row (it sees at least itself); the guard avoids 0 * inf.
    const T inv = use_sigmoid ? T(1) : (l[i] > T(0) ? T(1) / l[i] : T(0));
    T* ot = out + base + static_cast<int64_t>(t) * rs;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = tx + 16 * c;
      if (d < HS) ot[d] = o[i][c] * inv;
    }
    if (lse != nullptr && tx == 0)  // softmax: log-sum-exp; sigmoid: the row's sum of weights
      lse[static_cast<int64_t>(bh) * Tn + t] =
          use_sigmoid ? l[i] : (l[i] > T(0) ? m[i] + dev_log(l[i]) : neg_inf<T>());
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, step 1: Dvec[b, h, t] = sum_i dO[b, t, h, i] * O[b, t, h, i]. One warp per (b, t, h).

template <class T>
__global__ void attention_row_dot_kernel(const T* __restrict__ dout, const T* __restrict__ out,
                                         T* __restrict__ dvec, int64_t rows, int Tn, int NH,
                                         int HS) {
  const int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps leave together (rows are warp-uniform)
  const T* a = dout + row * HS;  // (HS)
  const T* o = out + row * HS;   // (HS)
  T acc = T(0);
  for (int d = lane; d < HS; d += 32) acc += a[d] * o[d];
  for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  if (lane == 0) {
    const int64_t h = row % NH, t = (row / NH) % Tn, b = row / (static_cast<int64_t>(NH) * Tn);
    dvec[(b * NH + h) * Tn + t] = acc;
  }
}

// Backward, step 2: dq for one (b, h, query tile), looping over the visible key tiles.
template <class T, int D, int RQ, int RK>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                        const T* __restrict__ dout, const T* __restrict__ lse,
                        const T* __restrict__ dvec, const int32_t* __restrict__ first_key,
                        T* __restrict__ dq, int Tn, int NH, int HS, T scale, bool use_sigmoid) {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1, LDS = BK + 1, DC = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);           // (BQ, D+1) query tile
  T* dOs = Qs + BQ * LD;                            // (BQ, D+1) output-gradient tile
  T* Ks = dOs + BQ * LD;                            // (BK, D+1) key tile
  T* Vs = Ks + BK * LD;                             // (BK, D+1) value tile
  T* dSs = Vs + BK * LD;                            // (BQ, BK+1) score gradients of the tile
  T* Ls = dSs + BQ * LDS;                           // (BQ) lse of each row
  T* Ds = Ls + BQ;                                  // (BQ) D of each row
  int* Fs = reinterpret_cast<int*>(Ds + BQ);        // (BQ) first visible key of each row

  const int tid = threadIdx.x, tx = tid % kGroup, ty = tid / kGroup;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;
  const int64_t rs = static_cast<int64_t>(NH) * HS;
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * HS;
  const int64_t bht = static_cast<int64_t>(bh) * Tn;  // (b, h, 0) in (B, NH, T)

  load_tile<T, D, BQ, LD>(Qs, q + base, q0, Tn, rs, HS);
  load_tile<T, D, BQ, LD>(dOs, dout + base, q0, Tn, rs, HS);
  for (int r = tid; r < BQ; r += kThreads) {
    const int t = q0 + r;
    const bool valid = t < Tn;
    Fs[r] = valid ? first_key[t] : INT_MAX;
    Ls[r] = (valid && !use_sigmoid) ? lse[bht + t] : T(0);
    Ds[r] = (valid && !use_sigmoid) ? dvec[bht + t] : T(0);
  }
  __syncthreads();
  int kmin = INT_MAX;
  for (int r = 0; r < BQ; ++r) kmin = min(kmin, Fs[r]);
  const int kend = min(q0 + BQ, Tn);

  T acc[RQ][DC];
#pragma unroll
  for (int i = 0; i < RQ; ++i)
#pragma unroll
    for (int c = 0; c < DC; ++c) acc[i][c] = T(0);

  for (int k0 = (kmin / BK) * BK; k0 < kend; k0 += BK) {
    __syncthreads();
    load_tile<T, D, BK, LD>(Ks, k + base, k0, Tn, rs, HS);
    load_tile<T, D, BK, LD>(Vs, v + base, k0, Tn, rs, HS);
    __syncthreads();

    T s[RQ][RK], dp[RQ][RK];
#pragma unroll
    for (int i = 0; i < RQ; ++i)
#pragma unroll
      for (int j = 0; j < RK; ++j) s[i][j] = dp[i][j] = T(0);
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      T qv[RQ], gv[RQ], kv[RK], vv[RK];
#pragma unroll
      for (int i = 0; i < RQ; ++i) {
        qv[i] = Qs[(ty + 16 * i) * LD + d];
        gv[i] = dOs[(ty + 16 * i) * LD + d];
      }
#pragma unroll
      for (int j = 0; j < RK; ++j) {
        kv[j] = Ks[(tx + 16 * j) * LD + d];
        vv[j] = Vs[(tx + 16 * j) * LD + d];
      }
#pragma unroll
      for (int i = 0; i < RQ; ++i)
#pragma unroll
        for (int j = 0; j < RK; ++j) {
          s[i][j] += qv[i] * kv[j];
          dp[i][j] += gv[i] * vv[j];
        }
    }
#pragma unroll
    for (int i = 0; i < RQ; ++i) {
      const int r = ty + 16 * i, t = q0 + r, first = Fs[r];
#pragma unroll
      for (int j = 0; j < RK; ++j) {
        const int key = k0 + tx + 16 * j;
        T ds = T(0);
        if (key >= first && key <= t) {
          const T score = s[i][j] * scale;
          if (use_sigmoid) {
            const T p = dev_sigmoid(score);
            ds = p * (T(1) - p) * dp[i][j];
          } else {
            const T p = dev_exp(score - Ls[r]);
            ds = p * (dp[i][j] - Ds[r]);
          }
        }
        dSs[r * LDS + tx + 16 * j] = ds;
      }
    }
    __syncthreads();

#pragma unroll 4
    for (int c = 0; c < BK; ++c) {
      T kv[DC];
#pragma unroll
      for (int cc = 0; cc < DC; ++cc) kv[cc] = Ks[c * LD + tx + 16 * cc];
#pragma unroll
      for (int i = 0; i < RQ; ++i) {
        const T ds = dSs[(ty + 16 * i) * LDS + c];
#pragma unroll
        for (int cc = 0; cc < DC; ++cc) acc[i][cc] += ds * kv[cc];
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    const int t = q0 + ty + 16 * i;
    if (t >= Tn) continue;
    T* g = dq + base + static_cast<int64_t>(t) * rs;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = tx + 16 * c;
      if (d < HS) g[d] = acc[i][c] * scale;
    }
  }
}

// Backward, step 3: dk and dv for one (b, h, key tile), looping over the query tiles that can see
// it (t >= k0). Thread (ty, tx) owns key rows ty + 16 i (i < RK) and, in the score tile, query
// columns tx + 16 j (j < RQ).
template <class T, int D, int RK, int RQ>
__global__ void __launch_bounds__(kThreads)
    attention_dkv_kernel(const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, const T* __restrict__ dout,
                         const T* __restrict__ lse, const T* __restrict__ dvec,
                         const int32_t* __restrict__ first_key, T* __restrict__ dk,
                         T* __restrict__ dv, int Tn, int NH, int HS, T scale, bool use_sigmoid) {
  constexpr int BQ = 16 * RQ, BK = 16 * RK, LD = D + 1, LDQ = BQ + 1, DC = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);       // (BK, D+1) key tile (fixed)
  T* Vs = Ks + BK * LD;                         // (BK, D+1) value tile (fixed)
  T* Qs = Vs + BK * LD;                         // (BQ, D+1) query tile
  T* dOs = Qs + BQ * LD;                        // (BQ, D+1) output-gradient tile
  T* PT = dOs + BQ * LD;                        // (BK, BQ+1) weights, key-major
  T* dST = PT + BK * LDQ;                       // (BK, BQ+1) score gradients, key-major
  T* Ls = dST + BK * LDQ;                       // (BQ) lse of each query row
  T* Ds = Ls + BQ;                              // (BQ) D of each query row
  int* Fs = reinterpret_cast<int*>(Ds + BQ);    // (BQ) first visible key of each query row

  const int tid = threadIdx.x, tx = tid % kGroup, ty = tid / kGroup;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int k0 = blockIdx.y * BK;  // early key tiles (most queries) start first
  const int64_t rs = static_cast<int64_t>(NH) * HS;
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * HS;
  const int64_t bht = static_cast<int64_t>(bh) * Tn;

  load_tile<T, D, BK, LD>(Ks, k + base, k0, Tn, rs, HS);
  load_tile<T, D, BK, LD>(Vs, v + base, k0, Tn, rs, HS);

  T gk[RK][DC], gv[RK][DC];
#pragma unroll
  for (int i = 0; i < RK; ++i)
#pragma unroll
    for (int c = 0; c < DC; ++c) gk[i][c] = gv[i][c] = T(0);

  for (int q0 = (k0 / BQ) * BQ; q0 < Tn; q0 += BQ) {
    __syncthreads();  // the previous query tile is no longer read (and Ks/Vs are loaded)
    load_tile<T, D, BQ, LD>(Qs, q + base, q0, Tn, rs, HS);
    load_tile<T, D, BQ, LD>(dOs, dout + base, q0, Tn, rs, HS);
    for (int r = tid; r < BQ; r += kThreads) {
      const int t = q0 + r;
      const bool valid = t < Tn;
      Fs[r] = valid ? first_key[t] : INT_MAX;
      Ls[r] = (valid && !use_sigmoid) ? lse[bht + t] : T(0);
      Ds[r] = (valid && !use_sigmoid) ? dvec[bht + t] : T(0);
    }
    __syncthreads();

    T s[RK][RQ], dp[RK][RQ];  // transposed: [key][query]
#pragma unroll
    for (int i = 0; i < RK; ++i)
#pragma unroll
      for (int j = 0; j < RQ; ++j) s[i][j] = dp[i][j] = T(0);
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      T kv[RK], vv[RK], qv[RQ], ov[RQ];
#pragma unroll
      for (int i = 0; i < RK; ++i) {
        kv[i] = Ks[(ty + 16 * i) * LD + d];
        vv[i] = Vs[(ty + 16 * i) * LD + d];
      }
#pragma unroll
      for (int j = 0; j < RQ; ++j) {
        qv[j] = Qs[(tx + 16 * j) * LD + d];
        ov[j] = dOs[(tx + 16 * j) * LD + d];
      }
#pragma unroll
      for (int i = 0; i < RK; ++i)
#pragma unroll
        for (int j = 0; j < RQ; ++j) {
          s[i][j] += kv[i] * qv[j];
          dp[i][j] += vv[i] * ov[j];
        }
    }
#pragma unroll
    for (int i = 0; i < RK; ++i) {
      const int c = ty + 16 * i, key = k0 + c;
#pragma unroll
      for (int j = 0; j < RQ; ++j) {
        const int r = tx + 16 * j, t = q0 + r;
        T p = T(0), ds = T(0);
        if (key >= Fs[r] && key <= t) {  // also excludes t >= T (Fs = INT_MAX) and key >= T
          const T score = s[i][j] * scale;
          if (use_sigmoid) {
            p = dev_sigmoid(score);
            ds = p * (T(1) - p) * dp[i][j];
          } else {
            p = dev_exp(score - Ls[r]);
            ds = p * (dp[i][j] - Ds[r]);
          }
        }
        PT[c * LDQ + r] = p;
        dST[c * LDQ + r] = ds;
      }
    }
    __syncthreads();

#pragma unroll 4
    for (int r = 0; r < BQ; ++r) {
      T ov[DC], qv[DC];
#pragma unroll
      for (int cc = 0; cc < DC; ++cc) {
        ov[cc] = dOs[r * LD + tx + 16 * cc];
        qv[cc] = Qs[r * LD + tx + 16 * cc];
      }
#pragma unroll
      for (int i = 0; i < RK; ++i) {
        const T p = PT[(ty + 16 * i) * LDQ + r];
        const T ds = dST[(ty + 16 * i) * LDQ + r];
#pragma unroll
        for (int cc = 0; cc < DC; ++cc) {
          gv[i][cc] += p * ov[cc];
          gk[i][cc] += ds * qv[cc];
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RK; ++i) {
    const int key = k0 + ty + 16 * i;
    if (key >= Tn) continue;
    T* gkr = dk + base + static_cast<int64_t>(key) * rs;
    T* gvr = dv + base + static_cast<int64_t>(key) * rs;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int d = tx + 16 * c;
      if (d < HS) {
        gkr[d] = gk[i][c] * scale;
        gvr[d] = gv[i][c];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Probes.

constexpr int kProbThreads = 128;  // power of two (tree reduction)

// Fixed-order tree over the block (deterministic). All threads must call it.
template <class T, class Op>
__device__ T block_reduce(T value, T* scratch, Op op) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int s = kProbThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) scratch[threadIdx.x] = op(scratch[threadIdx.x], scratch[threadIdx.x + s]);
    __syncthreads();
  }
  const T result = scratch[0];
  __syncthreads();  // scratch may be reused at once
  return result;
}

// One block per (b, h, t) query row: max and sum over the visible keys (scores recomputed in
// each pass; small T only), then the row of probs (B, NH, T, T).
template <class T>
__global__ void __launch_bounds__(kProbThreads)
    attention_probs_kernel(const T* __restrict__ q, const T* __restrict__ k,
                           const int32_t* __restrict__ first_key, T* __restrict__ probs, int Tn,
                           int NH, int HS, T scale, bool use_sigmoid) {
  __shared__ T scratch[kProbThreads];
  const int64_t row = blockIdx.x;  // (b * NH + h) * T + t
  const int t = static_cast<int>(row % Tn);
  const int64_t bh = row / Tn;
  const int64_t b = bh / NH, h = bh % NH;
  const int64_t rs = static_cast<int64_t>(NH) * HS;
  const T* qt = q + b * Tn * rs + t * rs + h * HS;  // (HS)
  const int first = first_key[t];
  auto score = [&](int j) {
    const T* kj = k + b * Tn * rs + j * rs + h * HS;  // (HS)
    T acc = T(0);
    for (int d = 0; d < HS; ++d) acc += qt[d] * kj[d];
    return acc * scale;
  };
  T row_lse = T(0);
  if (!use_sigmoid) {  // uniform over the block
    T m = neg_inf<T>();
    for (int j = first + threadIdx.x; j <= t; j += kProbThreads) m = dev_max(m, score(j));
    m = block_reduce(m, scratch, [](T a, T c) { return dev_max(a, c); });
    T sum = T(0);
    for (int j = first + threadIdx.x; j <= t; j += kProbThreads) sum += dev_exp(score(j) - m);
    sum = block_reduce(sum, scratch, [](T a, T c) { return a + c; });
    row_lse = m + dev_log(sum);  // the row sees key t: m finite, sum >= 1
  }
  T* prow = probs + row * Tn;  // (T) keys of query t
  for (int j = threadIdx.x; j < Tn; j += kProbThreads) {
    T a = T(0);
    if (j >= first && j <= t) a = use_sigmoid ? dev_sigmoid(score(j)) : dev_exp(score(j) - row_lse);
    prow[j] = a;
  }
}

// One thread per (b, h, t): A[b, h, t, key] from the saved lse (softmax) or recomputed (sigmoid);
// the fallback of attention_key_mass_tiled below (heads that are not whole 16-byte packs, or more
// than 32 of them).
// q and k are stored as S (f32, f64, or bf16 widened to f32: T = AccumulateIn<S>), positions rs
// elements apart (NH * HS, or 3C for qkv_part views). q.k runs over 16-byte packs (4 f32, 2 f64,
// 8 bf16) when `packed` (HS and rs divide into them and q, k are 16-byte aligned), in the same
// order as element by element.
template <class S, class T = typename AccumulateIn<S>::type>
__global__ void attention_key_mass_kernel(const S* __restrict__ q, const S* __restrict__ k,
                                          const T* __restrict__ lse,
                                          const int32_t* __restrict__ first_key,
                                          T* __restrict__ mass, int64_t n, int Tn, int NH, int HS,
                                          int64_t rs, int key, T scale, bool use_sigmoid,
                                          bool packed) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= n) return;
  const int t = static_cast<int>(idx % Tn);
  const int64_t bh = idx / Tn, b = bh / NH, h = bh % NH;
  T a = T(0);
  if (t >= key && key >= first_key[t]) {
    const S* qt = q + b * Tn * rs + t * rs + h * HS;    // (HS)
    const S* kk = k + b * Tn * rs + key * rs + h * HS;  // (HS)
    T acc = T(0);
    if (packed) {
      constexpr int kPer = 16 / sizeof(S);
      const uint4* qv = reinterpret_cast<const uint4*>(qt);  // (HS / kPer)
      const uint4* kv = reinterpret_cast<const uint4*>(kk);  // (HS / kPer)
#pragma unroll 8  // HS = 64 bf16: the row's 8 loads of q and of k in flight together
      for (int d = 0; d < HS / kPer; ++d) {
        const uint4 a = qv[d], c = kv[d];
        const S* ea = reinterpret_cast<const S*>(&a);
        const S* ec = reinterpret_cast<const S*>(&c);
#pragma unroll
        for (int e = 0; e < kPer; ++e) acc += to_acc(ea[e]) * to_acc(ec[e]);
      }
    } else {
      for (int d = 0; d < HS; ++d) acc += to_acc(qt[d]) * to_acc(kk[d]);
    }
    const T score = acc * scale;
    a = use_sigmoid ? dev_sigmoid(score) : dev_exp(score - lse[idx]);
  }
  mass[idx] = a;
}

// The same values for tiles of kMassTile positions of one sequence and every head, where q.k
// runs over 16-byte packs and a head holds G of them (G a power of two up to 32): a group of G
// lanes takes one (t, h), each lane one pack, the partial sums added by an xor butterfly (a
// fixed order). Consecutive groups take consecutive heads of a position, so a warp reads whole
// rows of q (NH * HS contiguous elements) instead of 32 rows rs apart, 16 bytes of each; key's
// row waits in shared memory, and the tile's masses are written through shared memory, T-major
// like lse. Grid: B * ceil(T / kMassTile) blocks; dynamic shared memory: key's row (NH * G
// packs), then the tile's masses (NH, kMassTile) in T.
constexpr int kMassTile = 32;
constexpr int kMassThreads = 256;

template <class S, int G, class T = typename AccumulateIn<S>::type>
__global__ void __launch_bounds__(kMassThreads)
    attention_key_mass_tiled(const S* __restrict__ q, const S* __restrict__ k,
                             const T* __restrict__ lse, const int32_t* __restrict__ first_key,
                             T* __restrict__ mass, int Tn, int NH, int64_t rs, int key, T scale,
                             bool use_sigmoid) {
  constexpr int kPer = 16 / sizeof(S);  // elements a pack
  extern __shared__ uint4 shared_packs[];
  uint4* key_row = shared_packs;                               // (NH * G) packs of k[b, key]
  T* tile = reinterpret_cast<T*>(shared_packs + NH * G);       // (NH, kMassTile)
  const int tiles = (Tn + kMassTile - 1) / kMassTile;
  const int64_t b = blockIdx.x / tiles;
  const int t0 = static_cast<int>(blockIdx.x % tiles) * kMassTile;
  const uint4* krow = reinterpret_cast<const uint4*>(k + b * Tn * rs + key * rs);  // (NH * G)
  for (int i = threadIdx.x; i < NH * G; i += blockDim.x) key_row[i] = krow[i];
  __syncthreads();
  const int lane = threadIdx.x % 32, part = lane % G;
  constexpr int kGroupsPerWarp = 32 / G;
  const int groups = kMassThreads / G, tasks = kMassTile * NH;
  // Warp-uniform trip count: every lane of a warp takes part in each butterfly.
  for (int first = (threadIdx.x / 32) * kGroupsPerWarp; first < tasks; first += groups) {
    const int task = first + lane / G;  // (t - t0) * NH + h
    const int t = t0 + task / NH, h = task % NH;
    const bool counted = task < tasks && t < Tn && t >= key && key >= first_key[t];
    T acc = T(0);
    if (counted) {
      const uint4 a = reinterpret_cast<const uint4*>(q + b * Tn * rs + t * rs)[h * G + part];
      const uint4 c = key_row[h * G + part];
      const S* ea = reinterpret_cast<const S*>(&a);
      const S* ec = reinterpret_cast<const S*>(&c);
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc += to_acc(ea[e]) * to_acc(ec[e]);
    }
#pragma unroll
    for (int offset = G / 2; offset > 0; offset >>= 1)
      acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (task < tasks && t < Tn && part == 0) {
      T a = T(0);
      if (counted) {
        const T score = acc * scale;
        a = use_sigmoid ? dev_sigmoid(score) : dev_exp(score - lse[(b * NH + h) * Tn + t]);
      }
      tile[h * kMassTile + (t - t0)] = a;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < tasks; i += blockDim.x) {
    const int h = i / kMassTile, t = t0 + i % kMassTile;
    if (t < Tn) mass[(b * NH + h) * Tn + t] = tile[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

// Device copy of a first_key vector as int32 (T), uploaded once per distinct mask and kept (at
// most kMaxCached masks; older ones are released stream-ordered when the cache is full). The
// first call with a new mask synchronises the stream (do it before any CUDA graph capture).
const int32_t* device_first_key(const std::vector<int64_t>& first_key, const char* op) {
  constexpr size_t kMaxCached = 64;
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, int32_t*> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(first_key);
  if (it != cache.end()) return it->second;
  SINKLAB_CHECK(first_key.size() <= static_cast<size_t>(INT_MAX), ShapeError,
                op << " (cuda): T = " << first_key.size() << " is too long",
                "the CUDA attention kernels index positions with 32-bit integers");
  if (cache.size() >= kMaxCached) {
    // Queued kernels of either stream (the compute stream, the metrics' side stream) may still
    // read a cached mask: wait for the whole device before giving the buffers back.
    SINKLAB_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& entry : cache) SINKLAB_CUDA_CHECK(cudaFreeAsync(entry.second, stream()));
    cache.clear();
  }
  std::vector<int32_t> host(first_key.begin(), first_key.end());  // (T)
  int32_t* dev = nullptr;                                          // (T) on the device
  const size_t bytes = std::max<size_t>(1, host.size()) * sizeof(int32_t);
  SINKLAB_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&dev), bytes, stream()));
  if (!host.empty())
    SINKLAB_CUDA_CHECK(cudaMemcpyAsync(dev, host.data(), host.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));  // `host` dies with this call
  cache.emplace(first_key, dev);
  return dev;
}

// Opts a kernel into more than 48 KB of dynamic shared memory (once per kernel), after checking
// the device allows `bytes` per block.
void prepare_shared_memory(const void* kernel, size_t bytes, const char* op) {
  static std::mutex mutex;
  static std::set<const void*> done;
  static int optin = -1;
  std::lock_guard<std::mutex> lock(mutex);
  if (optin < 0) optin = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  SINKLAB_CHECK(bytes <= static_cast<size_t>(optin), DeviceError,
                op << " (cuda): needs " << bytes << " bytes of shared memory per block, the device "
                   << "allows " << optin,
                "use a GPU with more shared memory per block (sm_80 or newer) or a smaller head "
                "size");
  if (done.count(kernel)) return;
  SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  done.insert(kernel);
}

// Runs body(std::integral_constant<int, D>{}) with D the head size rounded up to 16/32/64/128.
template <class Body>
void dispatch_head_size(int64_t HS, const char* op, Body&& body) {
  SINKLAB_CHECK(HS >= 0 && HS <= kMaxHeadSize, ShapeError,
                op << " (cuda): head size HS = " << HS << " is larger than " << kMaxHeadSize,
                "the CUDA attention kernels support HS <= 128: use more, smaller heads");
  if (HS <= 16)
    body(std::integral_constant<int, 16>{});
  else if (HS <= 32)
    body(std::integral_constant<int, 32>{});
  else if (HS <= 64)
    body(std::integral_constant<int, 64>{});
  else
    body(std::integral_constant<int, 128>{});
}

// Sizes of a (B, T, NH, HS) problem, checked against the launch limits.
struct Problem {
  int64_t B, T, NH, HS;
  int64_t bh() const { return B * NH; }
};

Problem problem_of(const Tensor& q, const char* op) {
  Problem p{q.size(0), q.size(1), q.size(2), q.size(3)};
  SINKLAB_CHECK(p.T <= INT_MAX && p.NH <= INT_MAX && p.bh() <= INT_MAX, ShapeError,
                op << " (cuda): q " << shape_str(q.shape()) << " is too large",
                "B * NH and T must each fit in 32 bits");
  return p;
}

// Grid: x = (b, h) pairs, y = tiles along T.
dim3 tile_grid(const Problem& p, int tile, const char* op) {
  const int64_t tiles = (p.T + tile - 1) / tile;
  SINKLAB_CHECK(tiles <= 65535, ShapeError,
                op << " (cuda): T = " << p.T << " needs " << tiles << " tiles of " << tile
                   << " (at most 65535)",
                "use a shorter sequence");
  return dim3(static_cast<unsigned>(p.bh()), static_cast<unsigned>(tiles));
}

// The backward's D_t = dO_t . O_t for the softmax mode: (B, NH, T) from dO and O (B, T, NH, HS)
// in T's dtype, one warp per row.
template <class T>
Tensor output_row_dots(const Tensor& grad_out, const Tensor& out, const char* op) {
  const int64_t B = out.size(0), Tn = out.size(1), NH = out.size(2), HS = out.size(3);
  Tensor dvec = Tensor::empty({B, NH, Tn}, out.dtype(), out.device());  // (B, NH, T)
  const int64_t rows = B * Tn * NH;
  attention_row_dot_kernel<<<blocks_for(rows * 32, 256), 256, 0, stream()>>>(
      grad_out.data<T>(), out.data<T>(), dvec.data<T>(), rows, static_cast<int>(Tn),
      static_cast<int>(NH), static_cast<int>(HS));
  SINKLAB_KERNEL_CHECK(op);
  return dvec;
}

void attention_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v,
                            const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                            ops::AttentionOperands& operands) {
  const char* op = "attention";
  const Problem p = problem_of(q, op);
  if (p.B * p.NH * p.T == 0) return;
  if (attention_forward_cudnn(q, k, v, params, out, lse, operands)) return;  // f32, BF16
  const int32_t* fk = device_first_key(params.first_key, op);  // (T)
  if (attention_forward_bf16(q, k, v, params, fk, out, lse, operands)) return;  // f32, BF16
  dispatch_float(q.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    dispatch_head_size(p.HS, op, [&](auto dtag) {
      constexpr int D = decltype(dtag)::value;
      constexpr int RQ = Tiles<T>::fwd_rq, RK = Tiles<T>::fwd_rk;
      constexpr size_t smem = forward_smem<T, D, RQ, RK>();
      auto kernel = attention_forward_kernel<T, D, RQ, RK>;
      prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem, op);
      kernel<<<tile_grid(p, 16 * RQ, op), kThreads, smem, stream()>>>(
          q.data<T>(), k.data<T>(), v.data<T>(), fk, out.data<T>(),
          lse.defined() ? lse.data<T>() : nullptr, static_cast<int>(p.T),
          static_cast<int>(p.NH), static_cast<int>(p.HS), static_cast<T>(params.scale),
          params.sigmoid);
      SINKLAB_KERNEL_CHECK(op);
    });
  });
}

void attention_backward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& grad_out,
                             const ops::AttentionParams& params,
                             const ops::AttentionOperands& operands, Tensor& dq, Tensor& dk,
                             Tensor& dv) {
  const char* op = "attention backward";
  const Problem p = problem_of(q, op);
  if (p.B * p.NH * p.T == 0) return;
  const Tensor g = grad_out.contiguous_or_self();  // (B, T, NH, HS)
  if (attention_backward_cudnn(q, k, v, out, lse, g, params, operands, dq, dk, dv)) return;
  const int32_t* fk = device_first_key(params.first_key, op);  // (T)
  dispatch_float(q.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    // (B, NH, T) D_t = dO_t . O_t, softmax only.
    const Tensor dvec = params.sigmoid ? Tensor() : output_row_dots<T>(g, out, op);
    if constexpr (std::is_same_v<T, float>) {  // tensor-core path (f32, Precision::BF16)
      if (attention_backward_bf16(q, k, v, g, lse, dvec, params, operands, fk, dq, dk, dv))
        return;
    }
    const T* plse = params.sigmoid ? nullptr : lse.data<T>();       // (B, NH, T)
    const T* pdvec = params.sigmoid ? nullptr : dvec.data<T>();     // (B, NH, T)
    const T scale = static_cast<T>(params.scale);
    const int Tn = static_cast<int>(p.T), NH = static_cast<int>(p.NH), HS = static_cast<int>(p.HS);
    dispatch_head_size(p.HS, op, [&](auto dtag) {
      constexpr int D = decltype(dtag)::value;
      {
        constexpr int RQ = Tiles<T>::dq_rq, RK = Tiles<T>::dq_rk;
        constexpr size_t smem = dq_smem<T, D, RQ, RK>();
        auto kernel = attention_dq_kernel<T, D, RQ, RK>;
        prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem, op);
        kernel<<<tile_grid(p, 16 * RQ, op), kThreads, smem, stream()>>>(
            q.data<T>(), k.data<T>(), v.data<T>(), g.data<T>(), plse, pdvec, fk, dq.data<T>(),
            Tn, NH, HS, scale, params.sigmoid);
        SINKLAB_KERNEL_CHECK(op);
      }
      {
        constexpr int RK = Tiles<T>::kv_rk, RQ = Tiles<T>::kv_rq;
        constexpr size_t smem = kv_smem<T, D, RK, RQ>();
        auto kernel = attention_dkv_kernel<T, D, RK, RQ>;
        prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem, op);
        kernel<<<tile_grid(p, 16 * RK, op), kThreads, smem, stream()>>>(
            q.data<T>(), k.data<T>(), v.data<T>(), g.data<T>(), plse, pdvec, fk, dk.data<T>(),
            dv.data<T>(), Tn, NH, HS, scale, params.sigmoid);
        SINKLAB_KERNEL_CHECK(op);
      }
    });
  });
}

void attention_probabilities_cuda(const Tensor& q, const Tensor& k,
                                  const ops::AttentionParams& params, Tensor& probs) {
  const char* op = "attention_probabilities";
  const Problem p = problem_of(q, op);
  const int64_t rows = p.B * p.NH * p.T;
  if (rows == 0) return;
  SINKLAB_CHECK(rows <= INT_MAX, ShapeError,
                op << " (cuda): " << rows << " query rows is too many", "probe a smaller batch");
  const int32_t* fk = device_first_key(params.first_key, op);  // (T)
  dispatch_float(q.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    attention_probs_kernel<T><<<static_cast<unsigned>(rows), kProbThreads, 0, stream()>>>(
        q.data<T>(), k.data<T>(), fk, probs.data<T>(), static_cast<int>(p.T),
        static_cast<int>(p.NH), static_cast<int>(p.HS), static_cast<T>(params.scale),
        params.sigmoid);
    SINKLAB_KERNEL_CHECK(op);
  });
}

void attention_key_mass_cuda(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t key,
                             const ops::AttentionParams& params, Tensor& mass) {
  const char* op = "attention_key_mass";
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2), HS = q.size(3);
  const int64_t n = B * NH * T;
  if (n == 0) return;
  SINKLAB_CHECK(T <= INT_MAX && HS <= INT_MAX && NH <= INT_MAX, ShapeError,
                op << " (cuda): q " << q.str() << " is too large", "probe a smaller batch");
  const int64_t rs = q.strides()[1];  // positions apart (ops checked q's and k's agree)
  SINKLAB_CHECK(k.strides()[1] == rs, ShapeError,
                op << " (cuda): q " << q.str() << " and k " << k.str() << " rows differ",
                "pass q and k of one layout");
  const int32_t* fk = device_first_key(params.first_key, op);  // (T)
  dispatch_storage(q.dtype(), op, [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const int64_t per = 16 / static_cast<int64_t>(sizeof(S));
    const bool packed =
        HS % per == 0 && rs % per == 0 && aligned16({q.raw_data(), k.raw_data()});
    // Tiles where a head's packs fit one warp's power-of-two groups (GPT-2 and LLaMA: 8 bf16
    // packs a head) and the tile's shared memory the default 48 KB.
    const int64_t G = packed ? HS / per : 0;
    const size_t shared = static_cast<size_t>(NH * G) * 16 + NH * kMassTile * sizeof(A);
    if (G > 0 && G <= 32 && (G & (G - 1)) == 0 && shared <= 48 * 1024) {
      const int64_t grid = B * ((T + kMassTile - 1) / kMassTile);
      auto launch = [&](auto g) {
        attention_key_mass_tiled<S, decltype(g)::value><<<grid, kMassThreads, shared, stream()>>>(
            static_cast<const S*>(q.raw_data()), static_cast<const S*>(k.raw_data()),
            params.sigmoid ? nullptr : lse.data<A>(), fk, mass.data<A>(), static_cast<int>(T),
            static_cast<int>(NH), rs, static_cast<int>(key), static_cast<A>(params.scale),
            params.sigmoid);
      };
      switch (G) {
        case 1: launch(std::integral_constant<int, 1>{}); break;
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 4: launch(std::integral_constant<int, 4>{}); break;
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        default: launch(std::integral_constant<int, 32>{}); break;
      }
      SINKLAB_KERNEL_CHECK(op);
      return;
    }
    attention_key_mass_kernel<S><<<blocks_for(n), 256, 0, stream()>>>(
        static_cast<const S*>(q.raw_data()), static_cast<const S*>(k.raw_data()),
        params.sigmoid ? nullptr : lse.data<A>(), fk, mass.data<A>(), n, static_cast<int>(T),
        static_cast<int>(NH), static_cast<int>(HS), rs, static_cast<int>(key),
        static_cast<A>(params.scale), params.sigmoid, packed);
    SINKLAB_KERNEL_CHECK(op);
  });
}

// f32 copy of a bf16 tensor (an f32 one as it is): the packed attention's fallbacks.
Tensor widened(const Tensor& x) { return x.to_dtype(DType::F32); }  // x's shape, f32

// attention_qkv: the tensor-core kernels on a bf16 qkv where they apply; otherwise attention's
// kernels on the thirds (a bf16 qkv widened to f32 first, its gradient rounded back).
void attention_qkv_forward_cuda(const Tensor& qkv, const ops::AttentionParams& params,
                                Tensor& out, Tensor& lse) {
  const char* op = "attention_qkv";
  if (out.numel() == 0) return;
  if (attention_qkv_forward_cudnn(qkv, params, out, lse)) return;
  if (out.dtype() == DType::BF16) {  // cuDNN was expected but declined: own kernels, rounded
    Tensor o32 = Tensor::empty(out.shape(), DType::F32, out.device());  // (B, T, NH, HS)
    attention_qkv_forward_cuda(qkv, params, o32, lse);
    ops::bf16_round_kernels.cuda_forward(o32, out);
    return;
  }
  const int32_t* fk = device_first_key(params.first_key, op);  // (T)
  if (attention_qkv_forward_bf16(qkv, params, fk, out, lse)) return;
  ops::attention_qkv_forward_by_parts(qkv.dtype() == DType::BF16 ? widened(qkv) : qkv, params,
                                      out, lse);
}

void attention_qkv_backward_cuda(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                 const Tensor& grad_out, const ops::AttentionParams& params,
                                 Tensor& dqkv) {
  const char* op = "attention_qkv backward";
  if (out.numel() == 0) return;
  const Tensor g = grad_out.contiguous_or_self();  // (B, T, NH, HS), out's dtype
  if (attention_qkv_backward_cudnn(qkv, out, lse, g, params, dqkv)) return;
  if (out.dtype() == DType::BF16) {  // own kernels on the widened out and gradient
    attention_qkv_backward_cuda(qkv, widened(out), lse, widened(g), params, dqkv);
    return;
  }
  if (qkv.dtype() == DType::BF16 && out.dtype() == DType::F32) {
    const int32_t* fk = device_first_key(params.first_key, op);  // (T)
    // (B, NH, T) D_t = dO_t . O_t, softmax only
    const Tensor dvec = params.sigmoid ? Tensor() : output_row_dots<float>(g, out, op);
    if (attention_qkv_backward_bf16(qkv, g, lse, dvec, params, fk, dqkv)) return;
    Tensor d32 = Tensor::empty(dqkv.shape(), DType::F32, dqkv.device());  // (B, T, 3C)
    ops::attention_qkv_backward_by_parts(widened(qkv), out, lse, g, params, d32);
    ops::bf16_round_kernels.cuda_forward(d32, dqkv);
    return;
  }
  ops::attention_qkv_backward_by_parts(qkv, out, lse, g, params, dqkv);
}

}  // namespace

void install_attention_kernels() {
  ops::attention_kernels.cuda_forward = attention_forward_cuda;
  ops::attention_kernels.cuda_backward = attention_backward_cuda;
  ops::attention_probabilities_kernels.cuda_forward = attention_probabilities_cuda;
  ops::attention_key_mass_kernels.cuda_forward = attention_key_mass_cuda;
  ops::attention_qkv_kernels.cuda_forward = attention_qkv_forward_cuda;
  ops::attention_qkv_kernels.cuda_backward = attention_qkv_backward_cuda;
  ops::attention_kernels_auto_description = cudnn_attention_description;
  ops::attention_qkv_fused_bf16 = attention_qkv_cudnn_applies;
}

}  // namespace sinklab::cuda
