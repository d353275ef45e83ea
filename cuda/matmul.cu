// Matrix products on the GPU through cuBLAS (strided batched GEMM).
//   f64, and f32 under Precision::Exact: pedantic fp32/fp64 math (no TF32), so results match the
//     CPU reference to fp32 rounding.
//   f32 under Precision::BF16: the operands are rounded to bf16 into stream-ordered scratch
//     buffers (one pass each) and multiplied on the tensor cores with fp32 accumulation into the
//     f32 output (CUBLAS_COMPUTE_32F, bf16 A/B, f32 C). SINKLAB_BF16_GEMM=fast selects cuBLAS's
//     in-library conversion instead (CUBLAS_COMPUTE_32F_FAST_16BF on the f32 operands), for
//     benchmarking the two against each other.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdlib>
#include <cstring>

#include "core/precision.h"
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"

namespace sinklab::cuda {

namespace {

cublasHandle_t make_handle(cublasMath_t mode) {
  cublasHandle_t created;
  SINKLAB_CUBLAS_CHECK(cublasCreate(&created));
  SINKLAB_CUBLAS_CHECK(cublasSetMathMode(created, mode));
  return created;
}

// Pedantic handle for exact math; a default-math handle for the tensor-core path.
cublasHandle_t handle(bool tensor_cores) {
  static cublasHandle_t pedantic = make_handle(CUBLAS_PEDANTIC_MATH);
  static cublasHandle_t fast = make_handle(CUBLAS_DEFAULT_MATH);
  cublasHandle_t h = tensor_cores ? fast : pedantic;
  SINKLAB_CUBLAS_CHECK(cublasSetStream(h, stream()));
  return h;
}

bool use_fast_16bf() {
  static const bool fast = [] {
    const char* v = std::getenv("SINKLAB_BF16_GEMM");
    return v != nullptr && std::strcmp(v, "fast") == 0;
  }();
  return fast;
}

// out[i] = bf16(in[i]) (round to nearest even), n elements; four per thread (float4 loads) when
// in is 16-byte aligned, else one.
__global__ void round_to_bf16(const float* __restrict__ in, __nv_bfloat16* __restrict__ out,
                              int64_t n, bool vectorized) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (!vectorized) {
    if (t < n) out[t] = __float2bfloat16_rn(in[t]);
    return;
  }
  const int64_t i = t * 4;
  if (i + 3 < n) {
    const float4 v = *reinterpret_cast<const float4*>(in + i);
    out[i] = __float2bfloat16_rn(v.x);
    out[i + 1] = __float2bfloat16_rn(v.y);
    out[i + 2] = __float2bfloat16_rn(v.z);
    out[i + 3] = __float2bfloat16_rn(v.w);
  } else {
    for (int64_t j = i; j < n; ++j) out[j] = __float2bfloat16_rn(in[j]);
  }
}

// out (bf16) = t (f32, contiguous) rounded, same shape, on the compute stream.
void round_to_bf16_cuda(const Tensor& t, Tensor& out) {
  const int64_t n = t.numel();
  if (n == 0) return;
  auto* dst = static_cast<__nv_bfloat16*>(out.raw_data());
  const bool aligned = reinterpret_cast<uintptr_t>(t.data<float>()) % 16 == 0;
  const unsigned blocks = aligned ? blocks_for((n + 3) / 4) : blocks_for(n);
  round_to_bf16<<<blocks, 256, 0, stream()>>>(t.data<float>(), dst, n, aligned);
  SINKLAB_KERNEL_CHECK("bf16 rounding");
}

// A bf16 copy of the contiguous f32 tensor t.
Tensor bf16_copy(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::BF16, t.device());  // t's shape, bf16
  round_to_bf16_cuda(t, out);
  return out;
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
  const bool bf16_operand = a.dtype() == DType::BF16 || b.dtype() == DType::BF16;
  if (c.dtype() == DType::F32 && (bf16_operand || cuda_precision() == Precision::BF16)) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (!bf16_operand && use_fast_16bf()) {
      SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          handle(true), op_b, op_a, static_cast<int>(N), static_cast<int>(M),
          static_cast<int>(K), &alpha, b.data<float>(), CUDA_R_32F, ldb, stride_b,
          a.data<float>(), CUDA_R_32F, lda, stride_a, &beta, c.data<float>(), CUDA_R_32F,
          static_cast<int>(N), stride_c, static_cast<int>(batch), CUBLAS_COMPUTE_32F_FAST_16BF,
          CUBLAS_GEMM_DEFAULT));
      return;
    }
    // bf16 operands as given, or rounded here (one pass each) when they come as f32.
    const Tensor a16 = a.dtype() == DType::BF16 ? a : bf16_copy(a);  // a's shape, bf16
    const Tensor b16 = b.dtype() == DType::BF16 ? b : bf16_copy(b);  // b's shape, bf16
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(true), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b16.raw_data(), CUDA_R_16BF, ldb, stride_b, a16.raw_data(), CUDA_R_16BF, lda,
        stride_a, &beta, c.data<float>(), CUDA_R_32F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else if (c.dtype() == DType::F32) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(false), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<float>(), CUDA_R_32F, ldb, stride_b, a.data<float>(), CUDA_R_32F, lda,
        stride_a, &beta, c.data<float>(), CUDA_R_32F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
  } else {
    const double alpha = 1.0, beta = accumulate ? 1.0 : 0.0;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(false), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<double>(), CUDA_R_64F, ldb, stride_b, a.data<double>(), CUDA_R_64F, lda,
        stride_a, &beta, c.data<double>(), CUDA_R_64F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void install_matmul_kernels() {
  ops::bf16_round_kernels.cuda_forward = round_to_bf16_cuda;
  ops::matmul_kernels.cuda_forward = batched_gemm_cuda;
  ops::matmul_kernels.cuda_backward = batched_gemm_cuda;
  // The bias gradient is a column sum: the same kernel as add's broadcast backward.
  ops::bias_grad_kernels.cuda_forward = [](const Tensor& g, Tensor& gb) {
    ops::add_kernels.cuda_backward(g, nullptr, gb);
  };
  ops::bias_grad_kernels.cuda_backward = ops::bias_grad_kernels.cuda_forward;
}

}  // namespace sinklab::cuda
