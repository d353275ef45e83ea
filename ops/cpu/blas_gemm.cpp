#include "ops/cpu/blas_gemm.h"

#include <algorithm>
#include <climits>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"

#if SINKLAB_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace sinklab::cpu {

namespace {

CpuGemm& current_choice() {
  static CpuGemm choice = openblas_built() ? CpuGemm::kOpenBLAS : CpuGemm::kReference;
  return choice;
}

}  // namespace

bool openblas_built() { return SINKLAB_HAVE_OPENBLAS != 0; }

CpuGemm cpu_gemm() { return current_choice(); }

void set_cpu_gemm(CpuGemm choice) {
  SINKLAB_CHECK(choice == CpuGemm::kReference || openblas_built(), ConfigError,
                "set_cpu_gemm: this build has no OpenBLAS",
                "install libopenblas-dev and reconfigure");
  current_choice() = choice;
}

std::string cpu_gemm_description() {
  const std::string threads = std::to_string(cpu_threads()) + " OpenMP thread" +
                              (cpu_threads() == 1 ? "" : "s");
#if SINKLAB_HAVE_OPENBLAS
  if (cpu_gemm() == CpuGemm::kOpenBLAS) {
    std::string version = OPENBLAS_VERSION;  // " OpenBLAS 0.3.21 "
    version.erase(0, version.find_first_not_of(' '));
    version.erase(version.find_last_not_of(' ') + 1);
    return version + " (" + openblas_get_corename() + " kernels, " + threads + ")";
  }
  return "own blocked kernel (run.cpu_gemm: reference), " + threads;
#else
  return "own blocked kernel (built without OpenBLAS), " + threads;
#endif
}

#if SINKLAB_HAVE_OPENBLAS

namespace {

// OpenBLAS's own worker threads off, once, before its first product (see the header).
void openblas_single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

CBLAS_TRANSPOSE cblas_op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

void cblas_gemm(int M, int N, int K, const float* A, int lda, bool ta, const float* B, int ldb,
                bool tb, float* C, int ldc, bool accumulate) {
  cblas_sgemm(CblasRowMajor, cblas_op(ta), cblas_op(tb), M, N, K, 1.0f, A, lda, B, ldb,
              accumulate ? 1.0f : 0.0f, C, ldc);
}
void cblas_gemm(int M, int N, int K, const double* A, int lda, bool ta, const double* B, int ldb,
                bool tb, double* C, int ldc, bool accumulate) {
  cblas_dgemm(CblasRowMajor, cblas_op(ta), cblas_op(tb), M, N, K, 1.0, A, lda, B, ldb,
              accumulate ? 1.0 : 0.0, C, ldc);
}

// Blocks of C's rows per product, so that `batch` products x blocks keep every thread busy;
// one block for products too small to be worth a thread's start.
int64_t row_blocks(int64_t batch, int64_t M, int64_t N, int64_t K) {
  constexpr int64_t kMinRows = 32, kMinWork = int64_t{1} << 18;  // multiply-adds per block
  const int64_t threads = cpu_threads();
  if (batch >= threads || M * N * K < 2 * kMinWork) return 1;
  const int64_t wanted = (threads + batch - 1) / batch;
  return std::clamp<int64_t>(std::min(M / kMinRows, M * N * K / kMinWork), 1, wanted);
}

// `batch` products C_i = op(A_i) @ op(B_i), entry i at A + i * stride_a (likewise B, C), each
// split into row blocks; all blocks of all entries are one parallel loop.
template <class T>
void blas_gemm_batch(int64_t batch, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                     int64_t stride_a, bool ta, const T* B, int64_t ldb, int64_t stride_b,
                     bool tb, T* C, int64_t ldc, int64_t stride_c, bool accumulate) {
  if (M == 0 || N == 0) return;
  for (int64_t v : {M, N, K, lda, ldb, ldc})
    SINKLAB_CHECK(v <= INT_MAX, ShapeError,
                  "matmul: a size or row stride of " << v << " exceeds OpenBLAS's 32-bit int",
                  "split the product, or set run.cpu_gemm: reference");
  openblas_single_threaded();
  const int64_t blocks = row_blocks(batch, M, N, K);
  const int64_t rows_per_block = (M + blocks - 1) / blocks;
  parallel_for(batch * blocks, [&](int64_t task) {
    const int64_t i = task / blocks, i0 = (task % blocks) * rows_per_block;
    const int64_t rows = std::min(M, i0 + rows_per_block) - i0;
    if (rows <= 0) return;
    // Row i0 of op(A): row i0 of A, or column i0 of a transposed (K, M) A.
    const T* a = A + i * stride_a + (ta ? i0 : i0 * lda);
    cblas_gemm(static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), a,
               static_cast<int>(lda), ta, B + i * stride_b, static_cast<int>(ldb), tb,
               C + i * stride_c + i0 * ldc, static_cast<int>(ldc), accumulate);
  });
}

}  // namespace

template <class T>
void blas_gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, bool trans_a,
               const T* B, int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate) {
  blas_gemm_batch<T>(1, M, N, K, A, lda, 0, trans_a, B, ldb, 0, trans_b, C, ldc, 0, accumulate);
}

void blas_batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                       bool accumulate) {
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  const int64_t lda = a.size(2), ldb = b.size(2);  // contiguous: a row is the last dim
  const int64_t stride_a = a.size(0) == 1 ? 0 : M * K, stride_b = b.size(0) == 1 ? 0 : K * N;
  dispatch_float(a.dtype(), "matmul", [&](auto zero) {
    using T = decltype(zero);
    blas_gemm_batch<T>(batch, M, N, K, a.data<T>(), lda, stride_a, trans_a, b.data<T>(), ldb,
                       stride_b, trans_b, c.data<T>(), N, M * N, accumulate);
  });
}

#else  // built without OpenBLAS: set_cpu_gemm and the environment never select these

template <class T>
void blas_gemm(int64_t, int64_t, int64_t, const T*, int64_t, bool, const T*, int64_t, bool, T*,
               int64_t, bool) {
  SINKLAB_FAIL(InternalError, "blas_gemm: this build has no OpenBLAS", "call gemm() instead");
}

void blas_batched_gemm(const Tensor&, bool, const Tensor&, bool, Tensor&, bool) {
  SINKLAB_FAIL(InternalError, "blas_batched_gemm: this build has no OpenBLAS",
               "call reference_batched_gemm() instead");
}

#endif

template void blas_gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, bool,
                               const float*, int64_t, bool, float*, int64_t, bool);
template void blas_gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, bool,
                                const double*, int64_t, bool, double*, int64_t, bool);

}  // namespace sinklab::cpu
