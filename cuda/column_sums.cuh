// Deterministic column sums on the GPU, shared by the norm parameter gradients (cuda/norms.cu)
// and the broadcast gradients of add/mul (cuda/elementwise.cu):
//   out_k[c] = sum over r < rows of term_k(r, c), K outputs (1 or 2) at once.
// Two passes without atomics: (1) blocks of 32 columns x a chunk of rows write one partial per
// (chunk, column) to an f64 scratch buffer (each thread sums its rows in order in T, then the 8
// thread rows are added in order in f64); (2) 32 threads per column add every 32nd chunk in
// order in f64, then their 32 sums in order. The chunk count depends only on the shape:
// bit-identical from run to run, and about 2048 blocks keep the whole GPU busy even for few
// columns and many rows.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/runtime.h"

namespace sinklab::cuda {

constexpr int kColTile = 32;  // columns per block in the column sums
constexpr int kColRows = 8;   // thread rows per block in the column sums

// Launch geometry of the partial pass for a (rows, cols) reduction.
struct ColumnPlan {
  int64_t chunks;          // row chunks (gridDim.y), >= 1
  int64_t rows_per_chunk;  // >= 1
  unsigned col_tiles;      // gridDim.x
};

inline ColumnPlan plan_columns(int64_t rows, int64_t cols) {
  ColumnPlan p;
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  // About 2048 blocks in all, each chunk at least 16 rows (two per thread row), <= 65535 chunks.
  int64_t chunks = (rows + 15) / 16;
  chunks = std::min<int64_t>(chunks, std::max<int64_t>(1, (2048 + tiles - 1) / tiles));
  chunks = std::clamp<int64_t>(chunks, 1, 65535);
  p.rows_per_chunk = std::max<int64_t>(1, (rows + chunks - 1) / chunks);
  p.chunks = std::max<int64_t>(1, (rows + p.rows_per_chunk - 1) / p.rows_per_chunk);
  SINKLAB_CHECK(tiles <= 0x7fffffff, ShapeError,
                "column reduction (cuda): " << cols << " columns is too many",
                "split the tensor");
  p.col_tiles = static_cast<unsigned>(std::max<int64_t>(1, tiles));
  return p;
}

// Block (kColTile, kColRows); grid (col_tiles, chunks). partial (K, chunks, cols) in f64.
template <class T, int K, class Term>
__global__ void column_partial_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk,
                                      double* partial, Term term) {
  __shared__ double tile[K][kColRows][kColTile];  // (K, 8, 32)
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  T acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = T(0);
  // Unrolled so that several rows' loads are in flight at once (the sums keep their order).
  if (c < cols) {
#pragma unroll 4
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColRows) term(r, c, acc);
  }
#pragma unroll
  for (int k = 0; k < K; ++k) tile[k][threadIdx.y][threadIdx.x] = static_cast<double>(acc[k]);
  __syncthreads();  // reached by every thread (no early return above)
  if (threadIdx.y == 0 && c < cols) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double s = 0;
      for (int j = 0; j < kColRows; ++j) s += tile[k][j][threadIdx.x];
      partial[(k * static_cast<int64_t>(gridDim.y) + chunk) * cols + c] = s;
    }
  }
}

constexpr int kFinishRows = 32;  // thread rows per block of the finishing pass

// Block (kColTile, kFinishRows), grid col_tiles: out_k[c] = sum over chunks of partial[k, chunk,
// c]. Thread row y adds chunks y, y + 32, ... in order, then thread row 0 adds the 32 sums in
// row order: a fixed order, and 32 loads in flight per column where one thread per column
// walked every chunk in turn (GPT-2's LayerNorm gradients: 25 to 31 us a call on the H100, 1.4
// ms a step, for 1.6 MB). out1 is used only when K == 2; null outputs are skipped.
template <class T, int K>
__global__ void __launch_bounds__(kColTile * kFinishRows)
    column_finish_kernel(const double* partial, int64_t chunks, int64_t cols, T* out0, T* out1) {
  __shared__ double sums[K][kFinishRows][kColTile + 1];  // (K, 32, 33), padded
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    double s = 0;
    if (c < cols)
      for (int64_t ch = threadIdx.y; ch < chunks; ch += kFinishRows)
        s += partial[(k * chunks + ch) * cols + c];
    sums[k][threadIdx.y][threadIdx.x] = s;
  }
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    T* out = k == 0 ? out0 : out1;
    if (out == nullptr) continue;
    double s = 0;
    for (int y = 0; y < kFinishRows; ++y) s += sums[k][y][threadIdx.x];
    out[c] = static_cast<T>(s);
  }
}

// Queues column_finish_kernel for partial (K, chunks, cols).
template <class T, int K>
void column_finish(const double* partial, int64_t chunks, int64_t cols, T* out0, T* out1) {
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  column_finish_kernel<T, K><<<static_cast<unsigned>(tiles), dim3(kColTile, kFinishRows), 0,
                               stream()>>>(partial, chunks, cols, out0, out1);
}

// out0[c] (and out1[c] when K == 2) = sum over r < rows of term(r, c); outputs (cols) each.
template <class T, int K, class Term>
void column_sums(int64_t rows, int64_t cols, Term term, T* out0, T* out1, Device device,
                 const char* op) {
  if (cols == 0) return;
  const ColumnPlan plan = plan_columns(rows, cols);
  Tensor scratch = Tensor::empty({K, plan.chunks, cols}, DType::F64, device);  // (K, chunks, cols)
  column_partial_kernel<T, K><<<dim3(plan.col_tiles, static_cast<unsigned>(plan.chunks)),
                                dim3(kColTile, kColRows), 0, stream()>>>(
      rows, cols, plan.rows_per_chunk, scratch.data<double>(), term);
  SINKLAB_KERNEL_CHECK(op);
  column_finish<T, K>(scratch.data<double>(), plan.chunks, cols, out0, out1);
  SINKLAB_KERNEL_CHECK(op);
  // scratch is released stream-ordered (cudaFreeAsync on stream()) after the kernels.
}

}  // namespace sinklab::cuda
