#include "ops/cpu/gemm.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/blas_gemm.h"
#include "ops/cpu/cpu_clones.h"
#include "ops/cpu/elementwise.h"

namespace sinklab::cpu {

namespace {

// Row-major copy of the transpose of a (rows, cols) matrix.
template <class T>
std::vector<T> transposed(const T* src, int64_t rows, int64_t cols) {
  std::vector<T> out(rows * cols);
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) out[c * rows + r] = src[r * cols + c];
  return out;
}

// Rows i0 .. i1 - 1 of C = A (M, K) @ B (K, N), both row-major (accumulating into C when
// `accumulate`). Inlined into one function per element type below, which the compiler builds
// twice: for AVX2 and for the baseline (SSE2), picked at load time by the CPU (GCC's
// target_clones). The per-element arithmetic (acc[j] += a * b[j], in k order) is the same in
// both, FMA contraction stays off (no "fma" target), so results are bit-identical on every x86.
template <class T>
__attribute__((always_inline)) inline void gemm_rows(int64_t i0, int64_t i1, int64_t N,
                                                     int64_t K, const T* A, const T* B, T* C,
                                                     bool accumulate) {
  constexpr int64_t kDepth = 256, kCols = 512;
  if (!accumulate)
    for (int64_t i = i0; i < i1; ++i) std::fill(C + i * N, C + (i + 1) * N, T(0));
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t k1 = std::min(K, k0 + kDepth);
    for (int64_t j0 = 0; j0 < N; j0 += kCols) {
      const int64_t j1 = std::min(N, j0 + kCols);
      for (int64_t i = i0; i < i1; ++i) {
        // The row's stretch of C accumulates in a local buffer: stores to C then never sit
        // between loads of B (whose addresses may alias C's modulo 4 KiB and stall them).
        alignas(64) T acc[kCols];
        T* c_row = C + i * N;
        const int64_t width = j1 - j0;
        std::copy(c_row + j0, c_row + j1, acc);
        for (int64_t k = k0; k < k1; ++k) {
          const T a = A[i * K + k];
          const T* __restrict__ b_row = B + k * N + j0;
          for (int64_t j = 0; j < width; ++j) acc[j] += a * b_row[j];
        }
        std::copy(acc, acc + width, c_row + j0);
      }
    }
  }
}

SINKLAB_CPU_CLONES void gemm_rows_of(int64_t i0, int64_t i1, int64_t N, int64_t K,
                                     const float* A, const float* B, float* C, bool accumulate) {
  gemm_rows(i0, i1, N, K, A, B, C, accumulate);
}
SINKLAB_CPU_CLONES void gemm_rows_of(int64_t i0, int64_t i1, int64_t N, int64_t K,
                                     const double* A, const double* B, double* C,
                                     bool accumulate) {
  gemm_rows(i0, i1, N, K, A, B, C, accumulate);
}

}  // namespace

template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B, bool trans_b,
          T* C, bool accumulate) {
  // Bring both operands to plain row-major (M, K) and (K, N): the transposes cost O(MK + KN),
  // small next to the O(MNK) product, and keep the inner loop a unit-stride axpy that vectorises.
  std::vector<T> a_copy, b_copy;
  if (trans_a) { a_copy = transposed(A, K, M); A = a_copy.data(); }
  if (trans_b) { b_copy = transposed(B, N, K); B = b_copy.data(); }
  constexpr int64_t kRows = 16;
  const int64_t row_blocks = (M + kRows - 1) / kRows;
  parallel_for(row_blocks, [&](int64_t rb) {
    const int64_t i0 = rb * kRows, i1 = std::min(M, i0 + kRows);
    gemm_rows_of(i0, i1, N, K, A, B, C, accumulate);
  });
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, bool, const float*, bool,
                          float*, bool);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, bool, const double*, bool,
                           double*, bool);

template <class T>
void selected_gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B,
                   bool trans_b, T* C, bool accumulate) {
  if (cpu_gemm() == CpuGemm::kOpenBLAS)
    blas_gemm<T>(M, N, K, A, trans_a ? M : K, trans_a, B, trans_b ? K : N, trans_b, C, N,
                 accumulate);
  else
    gemm<T>(M, N, K, A, trans_a, B, trans_b, C, accumulate);
}

template void selected_gemm<float>(int64_t, int64_t, int64_t, const float*, bool, const float*,
                                   bool, float*, bool);
template void selected_gemm<double>(int64_t, int64_t, int64_t, const double*, bool,
                                    const double*, bool, double*, bool);

void reference_batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                            Tensor& c, bool accumulate) {
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  const bool a_shared = a.size(0) == 1, b_shared = b.size(0) == 1;
  dispatch_float(a.dtype(), "matmul", [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    for (int64_t i = 0; i < batch; ++i)
      gemm<T>(M, N, K, pa + (a_shared ? 0 : i * M * K), trans_a, pb + (b_shared ? 0 : i * K * N), trans_b,
              pc + i * M * N, accumulate);
  });
}

void batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  bool accumulate) {
  if (cpu_gemm() == CpuGemm::kOpenBLAS)
    blas_batched_gemm(a, trans_a, b, trans_b, c, accumulate);
  else
    reference_batched_gemm(a, trans_a, b, trans_b, c, accumulate);
}

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  batched_gemm(x, false, w, true, y, false);
  if (!bias.defined()) return;
  const int64_t N = y.size(2), rows = y.numel() / N;
  dispatch_float(y.dtype(), "linear", [&](auto zero) {
    using T = decltype(zero);
    const T* b = bias.data<T>();  // (N)
    T* out = y.data<T>();         // (rows, N)
    parallel_for(rows, [&](int64_t r) {
      for (int64_t n = 0; n < N; ++n) out[r * N + n] += b[n];
    }, 64);
  });
}

void bias_grad(const Tensor& grad, Tensor& grad_bias) { sum_leading(grad, nullptr, grad_bias); }

void round_to_bf16(const Tensor& x, Tensor& out) {
  const float* in = x.data<float>();
  bf16* o = out.data<bf16>();
  for (int64_t i = 0; i < x.numel(); ++i) o[i] = float_to_bf16(in[i]);
}

}  // namespace sinklab::cpu
