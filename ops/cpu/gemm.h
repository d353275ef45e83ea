// Blocked, multithreaded CPU GEMM: the readable reference for OpenBLAS (blas_gemm.h) and
// cuBLASLt. batched_gemm is the CPU products' entry: it runs OpenBLAS when the build has it
// (cpu_gemm() in blas_gemm.h says which), this kernel otherwise.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sinklab::cpu {

// C = op(A) @ op(B) (+ C when accumulate), all row-major and contiguous.
// A is (M, K), or (K, M) when trans_a; B is (K, N), or (N, K) when trans_b; C is (M, N).
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B, bool trans_b,
          T* C, bool accumulate);

// The same product through the kernel cpu_gemm() names (OpenBLAS or gemm above): for kernels
// built from products, like attention's.
template <class T>
void selected_gemm(int64_t M, int64_t N, int64_t K, const T* A, bool trans_a, const T* B,
                   bool trans_b, T* C, bool accumulate);

// Tensor form over a batch: a and b (batch or 1, ., .) (1: shared by all), c (batch, M, N).
void reference_batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                            Tensor& c, bool accumulate);
// The same product through the kernel cpu_gemm() names (OpenBLAS or the reference above).
void batched_gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                  bool accumulate);

// y (1, rows, N) = x (1, rows, K) @ w (1, N, K)^T, plus bias (N) on every row when defined.
void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);

// out (bf16) = x (f32) rounded to nearest even, same shape: a tensor-core GEMM operand.
void round_to_bf16(const Tensor& x, Tensor& out);

// grad_bias[n] = sum over rows of grad (rows, N).
void bias_grad(const Tensor& grad, Tensor& grad_bias);

}  // namespace sinklab::cpu
