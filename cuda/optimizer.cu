// The CUDA kernels of ops/optimizer.h: one AdamW kernel over a flat (shard of a) buffer (and its
// scheduled twin, whose step scalars come from device buffers), a deterministic sum of squares
// over a fixed grid (read back, or left on the device), and in-place scaling.
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/optimizer.h"

namespace sinklab::cuda {

namespace {

// ops::AdamWHyper rounded to f32 for the kernel.
struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, grad_scale;
};

// Element i's update (both AdamW kernels: the same bits from the same hyper-parameters).
__device__ __forceinline__ void adamw_element(float* w, const float* g, float* m, float* v,
                                              const int32_t* decay, int64_t i,
                                              const AdamWHyper& h) {
  const float gi = g[i] * h.grad_scale;
  const float mi = h.beta1 * m[i] + (1.0f - h.beta1) * gi;
  const float vi = h.beta2 * v[i] + (1.0f - h.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float m_hat = mi / h.bias_correction1, v_hat = vi / h.bias_correction2;
  const float wd = decay[i] ? h.lr * h.weight_decay : 0.0f;
  w[i] -= h.lr * m_hat / (sqrtf(v_hat) + h.eps) + wd * w[i];
}

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, const int32_t* decay,
                             int64_t n, AdamWHyper h) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) adamw_element(w, g, m, v, decay, i, h);
}

// ops::AdamWConstants, the config's part rounded as adamw_cuda rounds it.
struct AdamWFixed {
  float beta1, beta2, eps, weight_decay;
  double max_norm;
};

// schedule (3) f32: lr, 1 - beta1^t, 1 - beta2^t; results (2) f64: the loss, the sum of squares.
__global__ void adamw_scheduled_kernel(float* w, const float* g, float* m, float* v,
                                       const int32_t* decay, int64_t n, AdamWFixed c,
                                       const float* __restrict__ schedule,
                                       const double* __restrict__ results) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const double norm = sqrt(results[1]);
  if (!isfinite(results[0]) || !isfinite(norm)) return;  // the skipped step
  // ops::clip_factor, on the device
  const double factor =
      c.max_norm <= 0 || !(norm > c.max_norm) ? 1.0 : c.max_norm / (norm + 1e-6);
  const AdamWHyper h{schedule[0], c.beta1, c.beta2, c.eps, c.weight_decay,
                     schedule[1], schedule[2], static_cast<float>(factor)};
  adamw_element(w, g, m, v, decay, i, h);
}

constexpr int kSumBlocks = 1024, kSumThreads = 256;

// Each block writes one partial over a fixed stride pattern; one block sums the partials.
__global__ void sum_squares_partial(const float* x, int64_t n, double* partial) {
  __shared__ double shared[kSumThreads];
  double acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kSumThreads) + threadIdx.x; i < n;
       i += static_cast<int64_t>(kSumBlocks) * kSumThreads)
    acc += static_cast<double>(x[i]) * x[i];
  shared[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kSumThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = shared[0];
}

__global__ void sum_partials(const double* partial, double* out) {
  __shared__ double shared[kSumThreads];
  double acc = 0;
  for (int i = threadIdx.x; i < kSumBlocks; i += kSumThreads) acc += partial[i];
  shared[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kSumThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = shared[0];
}

__global__ void scale_kernel(float* x, int64_t n, float factor) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] *= factor;
}

void adamw_cuda(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                const ops::AdamWHyper& hyper) {
  const int64_t n = w.numel();
  if (n == 0) return;
  const AdamWHyper h{static_cast<float>(hyper.lr),    static_cast<float>(hyper.beta1),
                     static_cast<float>(hyper.beta2), static_cast<float>(hyper.eps),
                     static_cast<float>(hyper.weight_decay), hyper.bias_correction1,
                     hyper.bias_correction2, hyper.grad_scale};
  adamw_kernel<<<blocks_for(n), 256, 0, stream()>>>(w.data<float>(), g.data<float>(),
                                                    m.data<float>(), v.data<float>(),
                                                    decay_mask.data<int32_t>(), n, h);
  SINKLAB_KERNEL_CHECK("adamw");
}

void adamw_scheduled_cuda(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                          const Tensor& decay_mask, const ops::AdamWConstants& c,
                          const Tensor& schedule, const Tensor& results) {
  const int64_t n = w.numel();
  if (n == 0) return;
  const AdamWFixed fixed{static_cast<float>(c.beta1), static_cast<float>(c.beta2),
                         static_cast<float>(c.eps), static_cast<float>(c.weight_decay),
                         c.max_norm};
  adamw_scheduled_kernel<<<blocks_for(n), 256, 0, stream()>>>(
      w.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(),
      decay_mask.data<int32_t>(), n, fixed, schedule.data<float>(), results.data<double>());
  SINKLAB_KERNEL_CHECK("adamw_update_scheduled");
}

// *total = sum(x^2), queued (partial: (kSumBlocks) f64 on the device).
void queue_sum_of_squares(const Tensor& x, double* partial, double* total) {
  sum_squares_partial<<<kSumBlocks, kSumThreads, 0, stream()>>>(x.data<float>(), x.numel(),
                                                                partial);
  SINKLAB_KERNEL_CHECK("sum_of_squares");
  sum_partials<<<1, kSumThreads, 0, stream()>>>(partial, total);
  SINKLAB_KERNEL_CHECK("sum_of_squares");
}

double sum_of_squares_cuda(const Tensor& x) {
  Tensor partial = Tensor::empty({kSumBlocks + 1}, DType::F64, x.device());  // (blocks + total)
  double* p = partial.data<double>();
  queue_sum_of_squares(x, p, p + kSumBlocks);
  double total = 0;
  SINKLAB_CUDA_CHECK(
      cudaMemcpyAsync(&total, p + kSumBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return total;
}

void sum_of_squares_into_cuda(const Tensor& x, Tensor& out) {
  Tensor partial = Tensor::empty({kSumBlocks}, DType::F64, x.device());  // (blocks)
  queue_sum_of_squares(x, partial.data<double>(), out.data<double>());
}

void scale_in_place_cuda(Tensor& x, float factor) {
  const int64_t n = x.numel();
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), 256, 0, stream()>>>(x.data<float>(), n, factor);
  SINKLAB_KERNEL_CHECK("scale_in_place");
}

}  // namespace

void install_optimizer_kernels() {
  ops::adamw_update_kernels.cuda = adamw_cuda;
  ops::sum_of_squares_kernels.cuda = sum_of_squares_cuda;
  ops::scale_in_place_kernels.cuda = scale_in_place_cuda;
  ops::sum_of_squares_into_kernels.cuda = sum_of_squares_into_cuda;
  ops::adamw_update_scheduled_kernels.cuda = adamw_scheduled_cuda;
}

}  // namespace sinklab::cuda
