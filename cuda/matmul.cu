// Matrix products on the GPU through cuBLAS (strided batched GEMM, fp32/fp64 accumulation,
// no TF32 so results match the CPU reference to fp32 rounding).
#include <cublas_v2.h>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace sinklab::cuda {

namespace {

cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created;
    SINKLAB_CUBLAS_CHECK(cublasCreate(&created));
    SINKLAB_CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_PEDANTIC_MATH));
    return created;
  }();
  SINKLAB_CUBLAS_CHECK(cublasSetStream(h, stream()));
  return h;
}

// Row-major C (M, N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
void batched_gemm_cuda(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                       bool accumulate) {
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  const long long stride_a = a.size(0) == 1 ? 0 : M * K;
  const long long stride_b = b.size(0) == 1 ? 0 : K * N;
  const long long stride_c = M * N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = static_cast<int>(trans_b ? K : N), lda = static_cast<int>(trans_a ? M : K);
  if (c.dtype() == DType::F32) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<float>(), CUDA_R_32F, ldb, stride_b, a.data<float>(), CUDA_R_32F, lda,
        stride_a, &beta, c.data<float>(), CUDA_R_32F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
  } else {
    const double alpha = 1.0, beta = accumulate ? 1.0 : 0.0;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<double>(), CUDA_R_64F, ldb, stride_b, a.data<double>(), CUDA_R_64F, lda,
        stride_a, &beta, c.data<double>(), CUDA_R_64F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void install_matmul_kernels() {
  ops::matmul_kernels.cuda_forward = batched_gemm_cuda;
  ops::matmul_kernels.cuda_backward = batched_gemm_cuda;
  // The bias gradient is a column sum: the same kernel as add's broadcast backward.
  ops::bias_grad_kernels.cuda_forward = [](const Tensor& g, Tensor& gb) {
    ops::add_kernels.cuda_backward(g, nullptr, gb);
  };
  ops::bias_grad_kernels.cuda_backward = ops::bias_grad_kernels.cuda_forward;
}

}  // namespace sinklab::cuda
