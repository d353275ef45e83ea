// Tensor-core causal flash attention under Precision::BF16 (core/precision.h): forward and
// deterministic backward with the same semantics as the exact kernels of cuda/attention.cu
// (softmax or sigmoid, per-query first visible key, lse (B, NH, T) saved by the softmax
// forward; sigmoid's row sums in its place where asked for), for head sizes 64 and 128. Two
// entries: f32 q, k, v (B, T, NH, HS) contiguous, and ops::attention_qkv's packed bf16 qkv
// (B, T, 3C), q, k, v read where they lie (positions 3C apart). out, dO and lse are f32; the
// gradients are f32 for the first entry and bf16, packed like qkv, for the second.
//
// Precision. The f32 entry rounds q, k, v to bf16 copies once (round to nearest even,
// ops::tensor_core_operand) and keeps them for its backward; dO is rounded once per backward.
// Tiles of the bf16 operands are streamed into shared memory with cp.async, double-buffered:
// the next tile's copy is in flight while the current one is multiplied. The products Q K^T,
// P V, dO V^T, dS K, P^T dO and dS^T Q run on tensor cores (mma.sync m16n8k16, bf16 operands, fp32
// accumulation). The scores' scaling, the online softmax (running max and sum), the sigmoid,
// dS = P (dP - D) and every sum outside the mma are fp32; P and dS are rounded to bf16 only as
// operands of the next product. Against the exact kernels expect errors of ~1e-2 of a tensor's
// largest entry (bf16 keeps 8 significant bits).
//
// Warp tiling. A block has 4 warps. mma.m16n8k16 multiplies a 16 x 16 A (row-major) by a 16 x 8
// B, accumulating a 16 x 8 fp32 C; lane l (g = l / 4, c = l % 4) holds C rows g and g + 8,
// columns 2c and 2c + 1. Each warp owns 16 rows of the block's tile (queries in the forward and
// the dq kernel, keys in the dk/dv kernel) and the whole width of the other side, so row
// reductions (max, sum) need two xor shuffles within a group of 4 lanes and the fp32 score
// accumulators of two adjacent n-tiles are exactly the A fragment of the next product (P V,
// dS K, P^T dO, dS^T Q): no round trip through shared memory. Operand fragments are read from
// shared memory with ldmatrix, with .trans for a B stored as (k, n) rows: V, and K, dO, Q as the
// B of the second product of each kernel.
//
// Forward: one block per (b, h, tile of 64 queries), late (long) tiles first; the query tile
// stays in shared memory, key/value tiles of 64 rows are streamed through it. Shared: Q, K, V
// (64, HS + 8) bf16, K and V twice (45 KB at HS 64, 85 KB at HS 128). Writes out and, for
// softmax, lse.
//
// Backward (no atomics: every output element is summed by one lane in a fixed order, so results
// are bit-identical across runs), probabilities recomputed from q, k and lse:
//   1. Dvec[b, h, t] = dO_t . O_t (softmax only): computed by cuda/attention.cu (fp32).
//   2. dq: one block per (b, h, 64 queries), looping over the visible key tiles of 32:
//      S = Q K^T, dP = dO V^T, dS = P (dP - D) (softmax) or P (1 - P) dP (sigmoid), dQ += dS K.
//      Shared: Q, dO (64, HS + 8) and K, V twice (32, HS + 8) bf16 (37 KB / 70 KB). 32 keys
//      per tile keep HS 64 at 119 registers (four blocks per SM; 160 at 64 keys).
//   3. dk, dv: one block per (b, h, 64 keys), early (long) tiles first, looping over the query
//      tiles t >= k0 (32 queries):
//      S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q.
//
// Tails: rows past T are zero-filled in shared memory and masked (a query t >= T has first key
// INT_MAX; a key j >= T is later than every valid query), so any T works. Shared rows are padded
// to HS + 8 bf16 (a multiple of 16 bytes, rows 16 bytes apart modulo 128): ldmatrix and the tile
// stores are free of bank conflicts. Within a warp, 16-key (16-query) slices that lie entirely
// above the causal diagonal are skipped; they are masked anyway.
// Under the plain causal mask (no isolated position), a tile that a warp sees whole (below the
// diagonal: all of its keys at or before all of its queries) skips the mask's compares; only
// the diagonal tiles are masked element by element.
#include "cuda/attention_bf16.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <type_traits>

#include "core/precision.h"
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/matmul.h"

namespace sinklab::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows of the warp-owned side of every tile (16 per warp)
constexpr int kPad = 8;             // bf16 elements of padding per shared row (16 bytes)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Tile shapes. BQ: queries, BK: keys. The warp-owned side is always kRows.
template <int D>
struct Tiles {
  static constexpr int fwd_bk = 64;                 // forward: kRows queries x 64 keys
  static constexpr int dq_bk = 32;                  // dq: kRows queries x 32 keys
  // dk/dv: kRows keys x 32 queries. At HS 64, 32 rather than 64 queries per tile cut the
  // kernel's registers from 228 to 162 (three blocks per SM instead of two) and its time at
  // GPT-2 124M from 750 to 675 us (ncu, H200); at HS 128 it keeps it within 255 registers.
  static constexpr int kv_bq = 32;
};

// Shared-memory bytes of each kernel (same carving as inside the kernels).
template <int D>
constexpr size_t forward_smem() {
  // Qs (kRows, D+8), Ks, Vs (2, BK, D+8) bf16; Fs (kRows) int.
  return size_t(kRows + 4 * Tiles<D>::fwd_bk) * (D + kPad) * sizeof(bf16) + kRows * sizeof(int);
}
template <int D>
constexpr size_t dq_smem() {
  // Qs, dOs (kRows, D+8), Ks, Vs (2, BK, D+8) bf16; Fs (kRows) int.
  return size_t(2 * kRows + 4 * Tiles<D>::dq_bk) * (D + kPad) * sizeof(bf16) +
         kRows * sizeof(int);
}
template <int D>
constexpr size_t kv_smem() {
  constexpr int BQ = Tiles<D>::kv_bq;
  // Ks, Vs (kRows, D+8), Qs, dOs (2, BQ, D+8) bf16; Ls, Ds (2, BQ) float; Fs (2, BQ) int.
  return size_t(2 * kRows + 4 * BQ) * (D + kPad) * sizeof(bf16) + 4 * BQ * sizeof(float) +
         2 * BQ * sizeof(int);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core primitives (sm_80+; the host launchers check the device before any launch).

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define SINKLAB_NO_BF16_MMA 1
#endif

// Two floats as a bf16x2 register: lo in the low 16 bits (the lower column / k index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

// ldmatrix .x4: lanes 8i .. 8i+7 give the addresses of the 8 rows (16 bytes each) of matrix i;
// r[i] of lane l holds row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 of matrix i (without
// .trans), or elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4) (with .trans).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* row) {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(row))));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* row) {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(row))));
#else
  __trap();
#endif
}

// c += A B for a 16 x 16 A (a[0..3]) and a 16 x 8 B (b0, b1), fp32 accumulators c[0..3].
// Fragments (PTX ISA, mma.m16n8k16, .bf16; the lower index in the low 16 bits of a register),
// lane l, g = l / 4, c = l % 4:
//   a[0]: A(g, 2c..2c+1)  a[1]: A(g+8, 2c..2c+1)  a[2]: A(g, 2c+8..2c+9)  a[3]: A(g+8, 2c+8..2c+9)
//   b0: B(2c..2c+1, g)    b1: B(2c+8..2c+9, g)
//   c[0], c[1]: C(g, 2c), C(g, 2c+1)   c[2], c[3]: C(g+8, 2c), C(g+8, 2c+1)
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();
#endif
}

// Operand loaders. `tile` points at element (0, 0) of a 16 x 16 block of a shared bf16 matrix
// with row stride ld (elements); lane = threadIdx.x % 32.
//
// A fragment of a row-major A (element (m, k) at tile[m * ld + k]): matrix 0 = rows 0-7 /
// cols 0-7 -> a[0], 1 = rows 8-15 / cols 0-7 -> a[1], 2 = rows 0-7 / cols 8-15 -> a[2],
// 3 = rows 8-15 / cols 8-15 -> a[3].
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int ld, int lane) {
  ldmatrix_x4(a, tile + (lane % 8 + 8 * ((lane / 8) % 2)) * ld + 8 * (lane / 16));
}
// B fragments of two adjacent n-tiles from B^T stored row-major (element (k, n) of B at
// tile[n * ld + k], e.g. K for S = Q K^T): b[0], b[1] for n 0-7, b[2], b[3] for n 8-15.
// Matrix 0 = n 0-7 / k 0-7, 1 = n 0-7 / k 8-15, 2 = n 8-15 / k 0-7, 3 = n 8-15 / k 8-15.
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const bf16* tile, int ld, int lane) {
  ldmatrix_x4(b, tile + (lane % 8 + 8 * (lane / 16)) * ld + 8 * ((lane / 8) % 2));
}
// The same from B stored row-major (element (k, n) at tile[k * ld + n], e.g. V for O = P V),
// transposed by ldmatrix: matrix 0 = k 0-7 / n 0-7, 1 = k 8-15 / n 0-7, 2 = k 0-7 / n 8-15,
// 3 = k 8-15 / n 8-15.
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const bf16* tile, int ld, int lane) {
  ldmatrix_x4_trans(b, tile + (lane % 8 + 8 * ((lane / 8) % 2)) * ld + 8 * (lane / 16));
}

// The fp32 accumulators of n-tiles 2j and 2j + 1 (16 x 16, columns = the next product's k) as
// the A fragment of the next product, rounded to bf16.
__device__ __forceinline__ void accumulators_as_a(uint32_t (&a)[4], const float (&lo)[4],
                                                  const float (&hi)[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);  // row g,     k 2c, 2c+1
  a[1] = pack_bf16(lo[2], lo[3]);  // row g + 8, k 2c, 2c+1
  a[2] = pack_bf16(hi[0], hi[1]);  // row g,     k 2c+8, 2c+9
  a[3] = pack_bf16(hi[2], hi[3]);  // row g + 8, k 2c+8, 2c+9
}

// 16 bytes global -> shared without passing through registers; bytes = 0 writes zeros.
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, int bytes) {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst))),
               "l"(src), "r"(bytes));
#else
  __trap();
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifndef SINKLAB_NO_BF16_MMA
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Starts copying rows row0 .. row0 + ROWS - 1 of one (b, h) slice into shared memory (ROWS,
// D+8), zeros past T. src points at element (b, 0, h, 0) of a (B, T, NH, D) bf16 tensor
// (16-byte aligned); consecutive rows are rs elements apart (NH * D, or 3C in a packed qkv).
// The copy is complete after cp_async_wait and a barrier.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* __restrict__ src,
                                                int row0, int Tn, int64_t rs) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(ROWS * kChunks % kThreads == 0, "tile does not split evenly over the block");
#pragma unroll
  for (int it = 0; it < ROWS * kChunks / kThreads; ++it) {
    const int idx = threadIdx.x + it * kThreads;
    const int r = idx / kChunks, col = (idx % kChunks) * 8, t = row0 + r;
    const bool valid = t < Tn;
    cp_async16(dst + r * (D + kPad) + col, src + (valid ? t : 0) * rs + col, valid ? 16 : 0);
  }
}

// Key/value tile `it` (at k0, in slot it % 2 of Kbuf/Vbuf (2, BK, D+8)) is waited for; the
// copy of the next one (at k0 + BK, while below kend) is started into the other slot first, so
// it is in flight while this one is multiplied. A barrier must follow before the tile is read.
template <int D, int BK>
__device__ __forceinline__ void prefetch_kv_tile(bf16* Kbuf, bf16* Vbuf, const bf16* k,
                                                 const bf16* v, int k0, int kend, int it, int Tn,
                                                 int64_t rs) {
  constexpr int LD = D + kPad;
  if (k0 + BK < kend) {
    load_tile_async<D, BK>(Kbuf + ((it + 1) % 2) * BK * LD, k, k0 + BK, Tn, rs);
    load_tile_async<D, BK>(Vbuf + ((it + 1) % 2) * BK * LD, v, k0 + BK, Tn, rs);
    cp_async_commit();
    cp_async_wait<1>();  // this tile has landed, the next may still be in flight
  } else {
    cp_async_wait<0>();
  }
}

// Max / sum over the 4 lanes holding one accumulator row (lanes 4g .. 4g+3). xor butterfly:
// every lane ends with the same bits.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// 2^x on the special-function unit (ex2.approx.ftz: ~2 ulp; a result below 2^-126 flushes to 0,
// and 2^-inf = 0): exp2f without the range fix-up around it. The weights it computes are at most
// 1 and are rounded to bf16 before any product.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// sigmoid(x) with x2 = x log2(e). __fdividef (x * approximate 1/y, ~2 ulp) avoids the slow path
// of IEEE division; it returns 0 for 1 + exp2(-x2) >= 2^126 (including inf), where the sigmoid
// is below 2^-126 anyway.
__device__ __forceinline__ float sigmoid_log2(float x2) {
  return __fdividef(1.f, 1.f + fast_exp2(-x2));
}

// Two adjacent gradient values of a row: f32 as they are, bf16 rounded to nearest even.
__device__ __forceinline__ void store_pair(float* p, float a, float b) {
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
}
__device__ __forceinline__ void store_pair(bf16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}

// ---------------------------------------------------------------------------------------------
// Forward. Warp w owns queries q0 + 16 w .. q0 + 16 w + 15; lane (g, c) holds rows g and g + 8 of
// them (index i = 0, 1 below). Scores are kept in log2 units: x = q.k * scale * log2(e).

template <int D, bool SIGMOID>
__global__ void __launch_bounds__(kThreads)
    attention_forward_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                  const bf16* __restrict__ v,
                                  const int32_t* __restrict__ first_key, float* __restrict__ out,
                                  float* __restrict__ lse, int Tn, int NH, int64_t qkv_rs,
                                  float scale_log2, bool causal_only) {
  constexpr int BQ = kRows, BK = Tiles<D>::fwd_bk, LD = D + kPad;
  constexpr int NK = BK / 8;  // key n-tiles of the score tile
  constexpr int ND = D / 8;   // head n-tiles of the output
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);        // (BQ, D+8) query tile
  bf16* Kbuf = Qs + BQ * LD;                           // (2, BK, D+8) key tiles
  bf16* Vbuf = Kbuf + 2 * BK * LD;                     // (2, BK, D+8) value tiles
  int* Fs = reinterpret_cast<int*>(Vbuf + 2 * BK * LD);  // (BQ) first visible key of each row

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;  // long (late) query tiles start first
  const int64_t rs = qkv_rs;                         // q, k, v: stride between positions
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * D;
  const int64_t o_rs = static_cast<int64_t>(NH) * D;  // out: stride between positions
  const int64_t o_base = static_cast<int64_t>(b) * Tn * o_rs + static_cast<int64_t>(h) * D;

  load_tile_async<D, BQ>(Qs, q + base, q0, Tn, rs);
  for (int r = tid; r < BQ; r += kThreads) Fs[r] = q0 + r < Tn ? first_key[q0 + r] : INT_MAX;
  __syncthreads();
  int kmin = INT_MAX;  // first key any row of the tile sees (row 0 is valid: kmin <= q0)
  for (int r = 0; r < BQ; ++r) kmin = min(kmin, Fs[r]);
  const int kend = min(q0 + BQ, Tn);  // keys beyond the last query are masked for every row
  const int kstart = (kmin / BK) * BK;
  load_tile_async<D, BK>(Kbuf, k + base, kstart, Tn, rs);
  load_tile_async<D, BK>(Vbuf, v + base, kstart, Tn, rs);
  cp_async_commit();  // group: Q and the first key/value tile

  const int wr = 16 * warp;        // first row of this warp in the tile
  const int wlast = q0 + wr + 15;  // last query of the warp: later keys are masked for it
  int t_row[2], first[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    t_row[i] = q0 + wr + g + 8 * i;
    first[i] = Fs[wr + g + 8 * i];  // INT_MAX past T: nothing visible
  }
  float m[2] = {-INFINITY, -INFINITY};  // running max (log2 units), same in the 4 lanes of a row
  float l[2] = {0.f, 0.f};              // running sum of this lane's columns
  float o[ND][4];                       // (16, D) output rows of the warp, unnormalised
#pragma unroll
  for (int n = 0; n < ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0.f;

  for (int k0 = kstart, it = 0; k0 < kend; k0 += BK, ++it) {
    const bf16* Ks = Kbuf + (it % 2) * BK * LD;  // (BK, D+8) this tile's keys
    const bf16* Vs = Vbuf + (it % 2) * BK * LD;  // (BK, D+8) this tile's values
    prefetch_kv_tile<D, BK>(Kbuf, Vbuf, k + base, v + base, k0, kend, it, Tn, rs);
    __syncthreads();

    // S = Q K^T: (16, BK) per warp.
    float s[NK][4];
#pragma unroll
    for (int j = 0; j < NK; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      load_a(a, Qs + wr * LD + 16 * kk, LD, lane);
#pragma unroll
      for (int np = 0; np < NK / 2; ++np) {
        if (k0 + 16 * np > wlast) continue;  // above the diagonal for the whole warp
        uint32_t bk[4];
        load_b_nk(bk, Ks + 16 * np * LD + 16 * kk, LD, lane);
        mma_16816(s[2 * np], a, bk[0], bk[1]);
        mma_16816(s[2 * np + 1], a, bk[2], bk[3]);
      }
    }

    // Mask, then the weights P (in s). A tile the warp sees whole (plain causal mask, every
    // key at or before the warp's first query) skips the mask's compares.
    auto scale_scores = [&](auto masked) {
#pragma unroll
      for (int j = 0; j < NK; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          bool visible = true;
          if constexpr (decltype(masked)::value) {
            const int i = e / 2, key = k0 + 8 * j + 2 * c + e % 2;
            visible = key >= first[i] && key <= t_row[i];
          }
          if constexpr (SIGMOID) {
            s[j][e] = visible ? sigmoid_log2(s[j][e] * scale_log2) : 0.f;
            if (lse != nullptr) l[e / 2] += s[j][e];  // the row sums, where asked for
          } else
            s[j][e] = visible ? s[j][e] * scale_log2 : -INFINITY;
        }
    };
    if (causal_only && k0 + BK - 1 <= q0 + wr && q0 + wr + 15 < Tn)
      scale_scores(std::false_type{});
    else
      scale_scores(std::true_type{});
    if constexpr (!SIGMOID) {
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int j = 0; j < NK; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) mx[e / 2] = fmaxf(mx[e / 2], s[j][e]);
      float ref[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = quad_max(mx[i]);
        // A row with nothing visible so far keeps m = -inf: use 0 as the reference so that
        // exp2(-inf - 0) = 0 instead of exp2(-inf + inf) = NaN.
        ref[i] = mx[i] == -INFINITY ? 0.f : mx[i];
        const float alpha = fast_exp2(m[i] - ref[i]);  // rescales what was summed so far
        m[i] = mx[i];
        l[i] *= alpha;
#pragma unroll
        for (int n = 0; n < ND; ++n) {
          o[n][2 * i] *= alpha;
          o[n][2 * i + 1] *= alpha;
        }
      }
#pragma unroll
      for (int j = 0; j < NK; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[j][e] = fast_exp2(s[j][e] - ref[e / 2]);  // 0 where masked (s = -inf)
          l[e / 2] += s[j][e];
        }
    }

    // O += P V: P (16, BK) from the accumulators, V (BK, D) row-major -> ldmatrix .trans.
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      if (k0 + 16 * kk > wlast) continue;  // P is zero there
      uint32_t a[4];
      accumulators_as_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bv[4];
        load_b_kn(bv, Vs + 16 * kk * LD + 16 * np, LD, lane);
        mma_16816(o[2 * np], a, bv[0], bv[1]);
        mma_16816(o[2 * np + 1], a, bv[2], bv[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!SIGMOID || lse != nullptr) l[i] = quad_sum(l[i]);  // all lanes, before any leaves
    const int t = t_row[i];
    if (t >= Tn) continue;
    // l >= 1 for every valid row (it sees at least itself); the guard avoids 0 * inf.
    const float inv = SIGMOID ? 1.f : (l[i] > 0.f ? 1.f / l[i] : 0.f);
    float* orow = out + o_base + static_cast<int64_t>(t) * o_rs;  // (D)
#pragma unroll
    for (int n = 0; n < ND; ++n)
      *reinterpret_cast<float2*>(orow + 8 * n + 2 * c) =
          make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    if (lse != nullptr && c == 0)  // softmax: log-sum-exp; sigmoid: the row's sum of weights
      lse[static_cast<int64_t>(bh) * Tn + t] =
          SIGMOID ? l[i] : (l[i] > 0.f ? (m[i] + log2f(l[i])) * kLn2 : -INFINITY);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, dq: one block per (b, h, query tile); warp w owns queries q0 + 16 w .. + 15.

// dS for one score (in log2 units x = q.k * scale * log2(e)) and its dP, where visible.
template <bool SIGMOID>
__device__ __forceinline__ float score_grad(float x, float dp, float lse2, float dvec) {
  if constexpr (SIGMOID) {
    const float p = sigmoid_log2(x);
    return p * (1.f - p) * dp;
  } else {
    return fast_exp2(x - lse2) * (dp - dvec);
  }
}

template <int D, bool SIGMOID, class G>
__global__ void __launch_bounds__(kThreads)
    attention_dq_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                             const bf16* __restrict__ v, const bf16* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ dvec,
                             const int32_t* __restrict__ first_key, G* __restrict__ dq,
                             int Tn, int NH, int64_t qkv_rs, float scale_log2, float scale,
                             bool causal_only) {
  constexpr int BQ = kRows, BK = Tiles<D>::dq_bk, LD = D + kPad;
  constexpr int NK = BK / 8, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);          // (BQ, D+8) query tile
  bf16* dOs = Qs + BQ * LD;                              // (BQ, D+8) output-gradient tile
  bf16* Kbuf = dOs + BQ * LD;                            // (2, BK, D+8) key tiles
  bf16* Vbuf = Kbuf + 2 * BK * LD;                       // (2, BK, D+8) value tiles
  int* Fs = reinterpret_cast<int*>(Vbuf + 2 * BK * LD);  // (BQ) first visible key of each row

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ;
  const int64_t rs = qkv_rs;  // q, k, v and dq: stride between positions
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * D;
  const int64_t o_rs = static_cast<int64_t>(NH) * D;  // dO: stride between positions
  const int64_t o_base = static_cast<int64_t>(b) * Tn * o_rs + static_cast<int64_t>(h) * D;
  const int64_t bht = static_cast<int64_t>(bh) * Tn;  // (b, h, 0) in (B, NH, T)

  load_tile_async<D, BQ>(Qs, q + base, q0, Tn, rs);
  load_tile_async<D, BQ>(dOs, dout + o_base, q0, Tn, o_rs);
  for (int r = tid; r < BQ; r += kThreads) Fs[r] = q0 + r < Tn ? first_key[q0 + r] : INT_MAX;
  __syncthreads();
  int kmin = INT_MAX;
  for (int r = 0; r < BQ; ++r) kmin = min(kmin, Fs[r]);
  const int kend = min(q0 + BQ, Tn);
  const int kstart = (kmin / BK) * BK;
  load_tile_async<D, BK>(Kbuf, k + base, kstart, Tn, rs);
  load_tile_async<D, BK>(Vbuf, v + base, kstart, Tn, rs);
  cp_async_commit();  // group: Q, dO and the first key/value tile

  const int wr = 16 * warp, wlast = q0 + wr + 15;
  int t_row[2], first[2];
  float lse2[2], dv_row[2];  // lse in log2 units and D of rows g, g + 8 (softmax)
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    t_row[i] = q0 + wr + g + 8 * i;
    first[i] = Fs[wr + g + 8 * i];
    const bool valid = !SIGMOID && t_row[i] < Tn;
    lse2[i] = valid ? lse[bht + t_row[i]] * kLog2e : 0.f;
    dv_row[i] = valid ? dvec[bht + t_row[i]] : 0.f;
  }
  float acc[ND][4];  // (16, D) dq rows of the warp, before the final scale
#pragma unroll
  for (int n = 0; n < ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.f;

  for (int k0 = kstart, it = 0; k0 < kend; k0 += BK, ++it) {
    const bf16* Ks = Kbuf + (it % 2) * BK * LD;  // (BK, D+8) this tile's keys
    const bf16* Vs = Vbuf + (it % 2) * BK * LD;  // (BK, D+8) this tile's values
    prefetch_kv_tile<D, BK>(Kbuf, Vbuf, k + base, v + base, k0, kend, it, Tn, rs);
    __syncthreads();

    // S = Q K^T and dP = dO V^T: (16, BK) per warp.
    float s[NK][4], dp[NK][4];
#pragma unroll
    for (int j = 0; j < NK; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t aq[4], ao[4];
      load_a(aq, Qs + wr * LD + 16 * kk, LD, lane);
      load_a(ao, dOs + wr * LD + 16 * kk, LD, lane);
#pragma unroll
      for (int np = 0; np < NK / 2; ++np) {
        if (k0 + 16 * np > wlast) continue;
        uint32_t bk[4], bv[4];
        load_b_nk(bk, Ks + 16 * np * LD + 16 * kk, LD, lane);
        load_b_nk(bv, Vs + 16 * np * LD + 16 * kk, LD, lane);
        mma_16816(s[2 * np], aq, bk[0], bk[1]);
        mma_16816(s[2 * np + 1], aq, bk[2], bk[3]);
        mma_16816(dp[2 * np], ao, bv[0], bv[1]);
        mma_16816(dp[2 * np + 1], ao, bv[2], bv[3]);
      }
    }

    // dS (in s), zero where masked; a tile the warp sees whole skips the mask's compares.
    auto score_grads = [&](auto masked) {
#pragma unroll
      for (int j = 0; j < NK; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = e / 2;
          bool visible = true;
          if constexpr (decltype(masked)::value) {
            const int key = k0 + 8 * j + 2 * c + e % 2;
            visible = key >= first[i] && key <= t_row[i];
          }
          s[j][e] = visible ? score_grad<SIGMOID>(s[j][e] * scale_log2, dp[j][e], lse2[i],
                                                  dv_row[i])
                            : 0.f;
        }
    };
    if (causal_only && k0 + BK - 1 <= q0 + wr && q0 + wr + 15 < Tn)
      score_grads(std::false_type{});
    else
      score_grads(std::true_type{});

    // dQ += dS K: dS (16, BK) from the accumulators, K (BK, D) row-major -> ldmatrix .trans.
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      if (k0 + 16 * kk > wlast) continue;
      uint32_t a[4];
      accumulators_as_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bk[4];
        load_b_kn(bk, Ks + 16 * kk * LD + 16 * np, LD, lane);
        mma_16816(acc[2 * np], a, bk[0], bk[1]);
        mma_16816(acc[2 * np + 1], a, bk[2], bk[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int t = t_row[i];
    if (t >= Tn) continue;
    G* grow = dq + base + static_cast<int64_t>(t) * rs;  // (D)
#pragma unroll
    for (int n = 0; n < ND; ++n)
      store_pair(grow + 8 * n + 2 * c, acc[n][2 * i] * scale, acc[n][2 * i + 1] * scale);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward, dk and dv: one block per (b, h, key tile), looping over the query tiles that can see
// it (t >= k0). Warp w owns keys k0 + 16 w .. + 15 (rows g, g + 8 of its accumulators); the
// columns of S^T are the BQ queries of the current query tile.

template <int D, bool SIGMOID, class G>
__global__ void __launch_bounds__(kThreads)
    attention_dkv_bf16_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                              const bf16* __restrict__ v, const bf16* __restrict__ dout,
                              const float* __restrict__ lse, const float* __restrict__ dvec,
                              const int32_t* __restrict__ first_key, G* __restrict__ dk,
                              G* __restrict__ dv, int Tn, int NH, int64_t qkv_rs,
                              float scale_log2, float scale, bool causal_only) {
  constexpr int BK = kRows, BQ = Tiles<D>::kv_bq, LD = D + kPad;
  constexpr int NQ = BQ / 8, ND = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);     // (BK, D+8) key tile (fixed)
  bf16* Vs = Ks + BK * LD;                          // (BK, D+8) value tile (fixed)
  bf16* Qbuf = Vs + BK * LD;                        // (2, BQ, D+8) query tiles
  bf16* dObuf = Qbuf + 2 * BQ * LD;                 // (2, BQ, D+8) output-gradient tiles
  float* Lbuf = reinterpret_cast<float*>(dObuf + 2 * BQ * LD);  // (2, BQ) lse, log2 units
  float* Dbuf = Lbuf + 2 * BQ;                      // (2, BQ) D of each query
  int* Fbuf = reinterpret_cast<int*>(Dbuf + 2 * BQ);  // (2, BQ) first visible key of each query

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int k0 = blockIdx.y * BK;  // early key tiles (most queries) start first
  const int64_t rs = qkv_rs;  // q, k, v, dk and dv: stride between positions
  const int64_t base = static_cast<int64_t>(b) * Tn * rs + static_cast<int64_t>(h) * D;
  const int64_t o_rs = static_cast<int64_t>(NH) * D;  // dO: stride between positions
  const int64_t o_base = static_cast<int64_t>(b) * Tn * o_rs + static_cast<int64_t>(h) * D;
  const int64_t bht = static_cast<int64_t>(bh) * Tn;

  // The per-query vectors of the tile at q0 into buffer slot: plain loads, visible after the
  // barrier that also waits for the tile's copies.
  auto load_query_vectors = [&](int q0, int slot) {
    for (int r = tid; r < BQ; r += kThreads) {
      const int t = q0 + r;
      const bool valid = t < Tn;
      Fbuf[slot * BQ + r] = valid ? first_key[t] : INT_MAX;
      Lbuf[slot * BQ + r] = (valid && !SIGMOID) ? lse[bht + t] * kLog2e : 0.f;
      Dbuf[slot * BQ + r] = (valid && !SIGMOID) ? dvec[bht + t] : 0.f;
    }
  };
  const int qstart = (k0 / BQ) * BQ;
  load_tile_async<D, BK>(Ks, k + base, k0, Tn, rs);
  load_tile_async<D, BK>(Vs, v + base, k0, Tn, rs);
  load_tile_async<D, BQ>(Qbuf, q + base, qstart, Tn, rs);
  load_tile_async<D, BQ>(dObuf, dout + o_base, qstart, Tn, o_rs);
  cp_async_commit();  // group: K, V and the first query tile
  load_query_vectors(qstart, 0);

  const int wr = 16 * warp, wk0 = k0 + wr;  // first key of this warp
  int key_row[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) key_row[i] = wk0 + g + 8 * i;
  float gk[ND][4], gv[ND][4];  // (16, D) dk (before the final scale) and dv rows of the warp
#pragma unroll
  for (int n = 0; n < ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) gk[n][e] = gv[n][e] = 0.f;

  for (int q0 = qstart, it = 0; q0 < Tn; q0 += BQ, ++it) {
    const int slot = it % 2;
    const bf16* Qs = Qbuf + slot * BQ * LD;    // (BQ, D+8) this tile's queries
    const bf16* dOs = dObuf + slot * BQ * LD;  // (BQ, D+8) this tile's output gradients
    const float* Ls = Lbuf + slot * BQ;        // (BQ)
    const float* Ds = Dbuf + slot * BQ;        // (BQ)
    const int* Fs = Fbuf + slot * BQ;          // (BQ)
    if (q0 + BQ < Tn) {  // prefetch the next query tile into the other slot
      load_tile_async<D, BQ>(Qbuf + (1 - slot) * BQ * LD, q + base, q0 + BQ, Tn, rs);
      load_tile_async<D, BQ>(dObuf + (1 - slot) * BQ * LD, dout + o_base, q0 + BQ, Tn, o_rs);
      cp_async_commit();
      load_query_vectors(q0 + BQ, 1 - slot);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // S^T = K Q^T and dP^T = V dO^T: (16 keys, BQ queries) per warp.
    float st[NQ][4], dpt[NQ][4];
#pragma unroll
    for (int j = 0; j < NQ; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] = dpt[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ak[4], av[4];
      load_a(ak, Ks + wr * LD + 16 * kk, LD, lane);
      load_a(av, Vs + wr * LD + 16 * kk, LD, lane);
#pragma unroll
      for (int np = 0; np < NQ / 2; ++np) {
        if (q0 + 16 * np + 15 < wk0) continue;  // these queries precede every key of the warp
        uint32_t bq[4], bo[4];
        load_b_nk(bq, Qs + 16 * np * LD + 16 * kk, LD, lane);
        load_b_nk(bo, dOs + 16 * np * LD + 16 * kk, LD, lane);
        mma_16816(st[2 * np], ak, bq[0], bq[1]);
        mma_16816(st[2 * np + 1], ak, bq[2], bq[3]);
        mma_16816(dpt[2 * np], av, bo[0], bo[1]);
        mma_16816(dpt[2 * np + 1], av, bo[2], bo[3]);
      }
    }

    // P^T (in st) and dS^T (in dpt), zero where masked. A tile the warp sees whole (plain
    // causal mask, every query valid and at or after the warp's last key) skips the mask's
    // compares.
    auto weights_and_grads = [&](auto masked) {
#pragma unroll
      for (int j = 0; j < NQ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 8 * j + 2 * c + e % 2;
          bool visible = true;
          if constexpr (decltype(masked)::value) {
            const int t = q0 + col, key = key_row[e / 2];
            // Also excludes t >= T (Fs = INT_MAX) and key >= T (later than every valid t).
            visible = key >= Fs[col] && key <= t;
          }
          float p = 0.f, ds = 0.f;
          if (visible) {
            const float x = st[j][e] * scale_log2;
            if constexpr (SIGMOID) {
              p = sigmoid_log2(x);
              ds = p * (1.f - p) * dpt[j][e];
            } else {
              p = fast_exp2(x - Ls[col]);
              ds = p * (dpt[j][e] - Ds[col]);
            }
          }
          st[j][e] = p;
          dpt[j][e] = ds;
        }
    };
    if (causal_only && q0 >= wk0 + 15 && q0 + BQ <= Tn)
      weights_and_grads(std::false_type{});
    else
      weights_and_grads(std::true_type{});

    // dV += P^T dO and dK += dS^T Q: A from the accumulators (k = queries), dO and Q (BQ, D)
    // row-major -> ldmatrix .trans.
#pragma unroll
    for (int kk = 0; kk < BQ / 16; ++kk) {
      if (q0 + 16 * kk + 15 < wk0) continue;
      uint32_t ap[4], ads[4];
      accumulators_as_a(ap, st[2 * kk], st[2 * kk + 1]);
      accumulators_as_a(ads, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bo[4], bq[4];
        load_b_kn(bo, dOs + 16 * kk * LD + 16 * np, LD, lane);
        load_b_kn(bq, Qs + 16 * kk * LD + 16 * np, LD, lane);
        mma_16816(gv[2 * np], ap, bo[0], bo[1]);
        mma_16816(gv[2 * np + 1], ap, bo[2], bo[3]);
        mma_16816(gk[2 * np], ads, bq[0], bq[1]);
        mma_16816(gk[2 * np + 1], ads, bq[2], bq[3]);
      }
    }
    __syncthreads();  // this slot is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int key = key_row[i];
    if (key >= Tn) continue;
    G* gkr = dk + base + static_cast<int64_t>(key) * rs;  // (D)
    G* gvr = dv + base + static_cast<int64_t>(key) * rs;  // (D)
#pragma unroll
    for (int n = 0; n < ND; ++n) {
      store_pair(gkr + 8 * n + 2 * c, gk[n][2 * i] * scale, gk[n][2 * i + 1] * scale);
      store_pair(gvr + 8 * n + 2 * c, gv[n][2 * i], gv[n][2 * i + 1]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

// True when the current device has bf16 mma.sync (compute capability 8.0 or newer). Queried once
// per process (one process per GPU).
bool device_has_bf16_mma() {
  static const bool has = device_attribute(cudaDevAttrComputeCapabilityMajor) >= 8;
  return has;
}

// The most dynamic shared memory one block may opt into on the current device (227 KB on
// sm_90, 163 KB on sm_80, 99 KB on sm_86/89). Queried once per process (one process per GPU).
size_t shared_memory_limit() {
  static const size_t limit =
      static_cast<size_t>(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin));
  return limit;
}

// Whether the tensor-core kernels take sequences of T positions with heads of HS under the
// current precision and device (both entries ask, for the forward and the backward together, so
// a problem never runs its forward here and its backward on the exact kernels).
bool shape_applies(int64_t T, int64_t HS) {
  if (cuda_precision() != Precision::BF16) return false;
  if (HS != 64 && HS != 128) return false;
  if ((T + kRows - 1) / kRows > 65535) return false;  // grid y limit (the exact path reports it)
  if (!device_has_bf16_mma()) return false;
  const size_t most = HS == 64 ? std::max({forward_smem<64>(), dq_smem<64>(), kv_smem<64>()})
                               : std::max({forward_smem<128>(), dq_smem<128>(), kv_smem<128>()});
  // The largest is HS 128's forward (85 KB): within sm_86/89's 99 KB since the backward's
  // tiles shrank to 32 rows (HS 128's dq had needed 102 KB; verified on sm_90 only).
  return most <= shared_memory_limit();
}

// Whether the tensor-core path takes an f32 problem with q (B, T, NH, HS).
bool applies(const Tensor& q) {
  return q.dtype() == DType::F32 && shape_applies(q.size(1), q.size(3));
}

// Opts a kernel into more than 48 KB of dynamic shared memory, once per kernel (applies() has
// checked the device allows it: up to 85 KB here).
void prepare_shared_memory(const void* kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::mutex mutex;
  static std::set<const void*> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (done.count(kernel)) return;
  SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  done.insert(kernel);
}

// Runs body(std::integral_constant<int, D>{}, std::bool_constant<SIGMOID>{}) for HS 64 / 128.
template <class Body>
void dispatch(int64_t HS, bool sigmoid, Body&& body) {
  auto with_d = [&](auto dtag) {
    if (sigmoid)
      body(dtag, std::true_type{});
    else
      body(dtag, std::false_type{});
  };
  if (HS == 64)
    with_d(std::integral_constant<int, 64>{});
  else
    with_d(std::integral_constant<int, 128>{});
}


}  // namespace

namespace {

// Whether the mask is the plain causal one (no isolated position: every query's first visible
// key is 0), so the kernels may skip the compares on tiles a warp sees whole.
bool causal_only(const ops::AttentionParams& params) {
  return std::all_of(params.first_key.begin(), params.first_key.end(),
                     [](int64_t first) { return first == 0; });
}

// The forward on bf16 q, k, v whose positions are qkv_rs elements apart (B, T, NH, HS each).
void launch_forward(const bf16* pq, const bf16* pk, const bf16* pv, int64_t qkv_rs, int64_t B,
                    int Tn, int NH, int64_t HS, const ops::AttentionParams& params,
                    const int32_t* first_key, float* po, float* plse) {
  const float scale_log2 = static_cast<float>(params.scale) * kLog2e;
  const dim3 grid(static_cast<unsigned>(B * NH), static_cast<unsigned>((Tn + kRows - 1) / kRows));
  dispatch(HS, params.sigmoid, [&](auto dtag, auto sigmoid) {
    constexpr int D = decltype(dtag)::value;
    constexpr bool S = decltype(sigmoid)::value;
    constexpr size_t smem = forward_smem<D>();
    auto kernel = attention_forward_bf16_kernel<D, S>;
    prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem);
    kernel<<<grid, kThreads, smem, stream()>>>(pq, pk, pv, first_key, po, plse, Tn, NH, qkv_rs,
                                              scale_log2, causal_only(params));
    SINKLAB_KERNEL_CHECK("attention (bf16)");
  });
}

// The dq and dk/dv kernels: q, k, v and the gradients G (f32 or bf16) with positions qkv_rs
// apart, dO (pg) contiguous (B, T, NH, HS).
template <class G>
void launch_backward(const bf16* pq, const bf16* pk, const bf16* pv, const bf16* pg,
                     int64_t qkv_rs, int64_t B, int Tn, int NH, int64_t HS,
                     const ops::AttentionParams& params, const float* plse, const float* pdvec,
                     const int32_t* first_key, G* pdq, G* pdk, G* pdv) {
  const float scale = static_cast<float>(params.scale);
  const float scale_log2 = scale * kLog2e;
  const bool plain = causal_only(params);
  const dim3 grid(static_cast<unsigned>(B * NH), static_cast<unsigned>((Tn + kRows - 1) / kRows));
  dispatch(HS, params.sigmoid, [&](auto dtag, auto sigmoid) {
    constexpr int D = decltype(dtag)::value;
    constexpr bool S = decltype(sigmoid)::value;
    {
      constexpr size_t smem = dq_smem<D>();
      auto kernel = attention_dq_bf16_kernel<D, S, G>;
      prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem);
      kernel<<<grid, kThreads, smem, stream()>>>(pq, pk, pv, pg, plse, pdvec, first_key, pdq, Tn,
                                                NH, qkv_rs, scale_log2, scale, plain);
      SINKLAB_KERNEL_CHECK("attention backward (bf16, dq)");
    }
    {
      constexpr size_t smem = kv_smem<D>();
      auto kernel = attention_dkv_bf16_kernel<D, S, G>;
      prepare_shared_memory(reinterpret_cast<const void*>(kernel), smem);
      kernel<<<grid, kThreads, smem, stream()>>>(pq, pk, pv, pg, plse, pdvec, first_key, pdk,
                                                pdv, Tn, NH, qkv_rs, scale_log2, scale, plain);
      SINKLAB_KERNEL_CHECK("attention backward (bf16, dk/dv)");
    }
  });
}

const bf16* bf16_data(const Tensor& t) { return static_cast<const bf16*>(t.raw_data()); }

}  // namespace

bool attention_forward_bf16(const Tensor& q, const Tensor& k, const Tensor& v,
                            const ops::AttentionParams& params, const int32_t* first_key,
                            Tensor& out, Tensor& lse, ops::AttentionOperands& operands) {
  if (!applies(q)) return false;
  float* po = out.data<float>();                                   // (B, T, NH, HS)
  float* plse = lse.defined() ? lse.data<float>() : nullptr;       // (B, NH, T)
  if (!aligned16({po})) return false;
  const Tensor q16 = ops::tensor_core_operand(q);  // (B, T, NH, HS) bf16 copies
  const Tensor k16 = ops::tensor_core_operand(k);
  const Tensor v16 = ops::tensor_core_operand(v);
  const int NH = static_cast<int>(q.size(2));
  launch_forward(bf16_data(q16), bf16_data(k16), bf16_data(v16), NH * q.size(3), q.size(0),
                 static_cast<int>(q.size(1)), NH, q.size(3), params, first_key, po, plse);
  operands = {q16, k16, v16};  // kept for the backward
  return true;
}

bool attention_backward_bf16(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& grad_out, const Tensor& lse, const Tensor& dvec,
                             const ops::AttentionParams& params,
                             const ops::AttentionOperands& operands, const int32_t* first_key,
                             Tensor& dq, Tensor& dk, Tensor& dv) {
  if (!applies(q)) return false;
  const float* plse = params.sigmoid ? nullptr : lse.data<float>();     // (B, NH, T)
  const float* pdvec = params.sigmoid ? nullptr : dvec.data<float>();   // (B, NH, T)
  float* pdq = dq.data<float>();
  float* pdk = dk.data<float>();
  float* pdv = dv.data<float>();
  if (!aligned16({pdq, pdk, pdv})) return false;
  // (B, T, NH, HS) bf16 copies: the forward's when it kept them, rounded here otherwise.
  const bool kept = operands.q.defined() && operands.k.defined() && operands.v.defined();
  const Tensor q16 = kept ? operands.q : ops::tensor_core_operand(q);
  const Tensor k16 = kept ? operands.k : ops::tensor_core_operand(k);
  const Tensor v16 = kept ? operands.v : ops::tensor_core_operand(v);
  const Tensor g16 = ops::tensor_core_operand(grad_out);
  const int NH = static_cast<int>(q.size(2));
  launch_backward<float>(bf16_data(q16), bf16_data(k16), bf16_data(v16), bf16_data(g16),
                         NH * q.size(3), q.size(0), static_cast<int>(q.size(1)), NH, q.size(3),
                         params, plse, pdvec, first_key, pdq, pdk, pdv);
  return true;
}

// The packed path: qkv (B, T, 3C) bf16, q, k, v at column offsets 0, C, 2C of every row. Only
// under Precision::BF16, as the f32 entry: elsewhere attention's exact kernels run (widened).
bool attention_qkv_applies(const Tensor& qkv, int64_t NH) {
  if (qkv.dtype() != DType::BF16) return false;
  if (NH <= 0 || qkv.size(2) % (3 * NH) != 0) return false;
  const int64_t C = qkv.size(2) / 3;
  if (!shape_applies(qkv.size(1), C / NH)) return false;
  // 16-byte rows and parts for cp.async: C * 2 bytes divisible by 16, the base aligned.
  return C % 8 == 0 && aligned16({qkv.raw_data()});
}

bool attention_qkv_forward_bf16(const Tensor& qkv, const ops::AttentionParams& params,
                                const int32_t* first_key, Tensor& out, Tensor& lse) {
  const int64_t NH = out.size(2);
  if (!attention_qkv_applies(qkv, NH)) return false;
  float* po = out.data<float>();                               // (B, T, NH, HS)
  float* plse = lse.defined() ? lse.data<float>() : nullptr;  // (B, NH, T)
  if (!aligned16({po})) return false;
  const int64_t C = qkv.size(2) / 3;
  const bf16* p = bf16_data(qkv);  // (B, T, 3C)
  launch_forward(p, p + C, p + 2 * C, 3 * C, qkv.size(0), static_cast<int>(qkv.size(1)),
                 static_cast<int>(NH), C / NH, params, first_key, po, plse);
  return true;
}

bool attention_qkv_backward_bf16(const Tensor& qkv, const Tensor& grad_out, const Tensor& lse,
                                 const Tensor& dvec, const ops::AttentionParams& params,
                                 const int32_t* first_key, Tensor& dqkv) {
  const int64_t NH = grad_out.size(2);
  if (!attention_qkv_applies(qkv, NH) || !attention_qkv_applies(dqkv, NH)) return false;
  const float* plse = params.sigmoid ? nullptr : lse.data<float>();    // (B, NH, T)
  const float* pdvec = params.sigmoid ? nullptr : dvec.data<float>();  // (B, NH, T)
  const Tensor g16 = ops::tensor_core_operand(grad_out);  // (B, T, NH, HS) bf16 (Precision::BF16)
  const int64_t C = qkv.size(2) / 3;
  const bf16* p = bf16_data(qkv);                          // (B, T, 3C)
  bf16* pd = static_cast<bf16*>(dqkv.raw_data());          // (B, T, 3C)
  launch_backward<bf16>(p, p + C, p + 2 * C, bf16_data(g16), 3 * C, qkv.size(0),
                        static_cast<int>(qkv.size(1)), static_cast<int>(NH), C / NH, params,
                        plse, pdvec, first_key, pd, pd + C, pd + 2 * C);
  return true;
}

}  // namespace sinklab::cuda
