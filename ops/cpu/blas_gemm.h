// CPU matrix products through OpenBLAS (Debian's libopenblas-dev), when the build found it.
//
// The blocked kernel of gemm.h stays the readable reference: tests compare the two, and
// set_cpu_gemm(kReference) selects it at run time (run.cpu_gemm: reference; bit-exact
// comparisons, debugging).
// Threads: OpenBLAS itself runs single-threaded; the product is split into blocks of C's rows
// that the project's OpenMP threads multiply side by side. So only one thread pool exists and
// OpenBLAS's own workers never spin against OpenMP's on the same cores.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace sinklab::cpu {

enum class CpuGemm { kOpenBLAS, kReference };

// True when this build links OpenBLAS (CMake found it; SINKLAB_HAVE_OPENBLAS).
bool openblas_built();

// The kernel CPU products use: OpenBLAS when built with it, unless set_cpu_gemm chose otherwise.
CpuGemm cpu_gemm();
// Overrides the choice (the trainer, from run.cpu_gemm; tests); kOpenBLAS in a build without it
// is an error.
void set_cpu_gemm(CpuGemm choice);
// One line for a run header: "OpenBLAS 0.3.21 (Haswell kernels, 2 OpenMP threads)" or
// "own blocked kernel (built without OpenBLAS)" / "(run.cpu_gemm: reference)".
std::string cpu_gemm_description();

// C = op(A) @ op(B) (+ C when accumulate), row-major, through OpenBLAS. A is (M, K), or (K, M)
// when trans_a, its rows lda elements apart; B is (K, N), or (N, K) when trans_b, rows ldb apart;
// C is (M, N), rows ldc apart. Split over the OpenMP threads by blocks of C's rows.
template <class T>
void blas_gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, bool trans_a,
               const T* B, int64_t ldb, bool trans_b, T* C, int64_t ldc, bool accumulate);

// Tensor form, as reference_batched_gemm: a and b (batch or 1, ., .), c (batch, M, N).
void blas_batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                       bool accumulate);

}  // namespace sinklab::cpu
