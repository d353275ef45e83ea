// CUDA twins of ops/cpu/elementwise and ops/cpu/reduce: broadcasting add/mul, scale, the
// leading-dims reduction of their backward, and full sums. f32 and f64 (the leading-dims sum
// also reads bf16: a bias gradient under a bf16 output, summed in f32).
#include "cuda/check.h"
#include "cuda/column_sums.cuh"
#include "core/dispatch.h"
#include "cuda/elementwise_map.cuh"
#include "cuda/runtime.h"
#include "cuda/storage_types.cuh"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace sinklab::cuda {

namespace {

// out = combine(a, b) with b (nb) repeating along a (n), n a multiple of nb. Index is the
// index type: 32-bit where n fits (a 64-bit modulo per element is many instructions).
template <class T, class Index, class Combine>
__global__ void broadcast_kernel(const T* a, const T* __restrict__ b, T* out, Index n, Index nb,
                                 Combine combine) {  // out may alias a (linear's bias, in place)
  const Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = combine(a[i], b[i % nb]);
}

struct Times {
  template <class T> __device__ T operator()(T x, T y) const { return x * y; }
};

template <class Combine>
void binary(const Tensor& a, const Tensor& b, Tensor& out, const char* op) {
  const int64_t n = a.numel(), nb = b.numel();
  if (n == 0) return;
  if (n == nb) {  // same shape: four elements per thread (cuda/elementwise_map.cuh)
    launch_binary_map<Combine>(a, b, out, op);
    return;
  }
  dispatch_float(a.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    if (n <= static_cast<int64_t>(UINT32_MAX))
      broadcast_kernel<<<blocks_for(n), 256, 0, stream()>>>(
          a.data<T>(), b.data<T>(), out.data<T>(), static_cast<uint32_t>(n),
          static_cast<uint32_t>(nb), Combine{});
    else
      broadcast_kernel<<<blocks_for(n), 256, 0, stream()>>>(a.data<T>(), b.data<T>(),
                                                            out.data<T>(), n, nb, Combine{});
  });
  SINKLAB_KERNEL_CHECK(op);
}

void add_cuda(const Tensor& a, const Tensor& b, Tensor& out) { binary<Plus>(a, b, out, "add"); }
void mul_cuda(const Tensor& a, const Tensor& b, Tensor& out) { binary<Times>(a, b, out, "mul"); }

template <class T>
__global__ void scale_kernel(const T* a, T* out, int64_t n, T s) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] * s;
}

void scale_cuda(const Tensor& a, double s, Tensor& out) {
  const int64_t n = a.numel();
  if (n == 0) return;
  if (a.dtype() == DType::F32)
    scale_kernel<<<blocks_for(n), 256, 0, stream()>>>(a.data<float>(), out.data<float>(), n,
                                                      static_cast<float>(s));
  else
    scale_kernel<<<blocks_for(n), 256, 0, stream()>>>(a.data<double>(), out.data<double>(), n, s);
  SINKLAB_KERNEL_CHECK("scale");
}

// grad_b[j] = sum over rows r of grad[r, j] (* times[r, j]); grad and times (rows, nb) stored as
// S (f32, f64, or bf16: a bias gradient under a bf16 output), summed in A = AccumulateIn<S>.
template <class S, class A = typename AccumulateIn<S>::type>
struct LeadingSumTerm {
  const S* g;      // (rows, nb)
  const S* times;  // (rows, nb) or null
  int64_t nb;
  __device__ void operator()(int64_t r, int64_t j, A* acc) const {
    const A v = to_acc(g[r * nb + j]);
    acc[0] += times ? v * to_acc(times[r * nb + j]) : v;
  }
};

// Deterministic two-pass column sums (cuda/column_sums.cuh): all SMs busy for any shape.
void sum_leading_cuda(const Tensor& grad, const Tensor* times, Tensor& grad_b) {
  const int64_t nb = grad_b.numel(), rows = grad.numel() / nb;
  SINKLAB_CHECK(grad.dtype() != DType::BF16 || (times == nullptr && grad_b.dtype() == DType::F32),
                DTypeError,
                "sum_leading (cuda): a bf16 gradient " << grad.str() << " into " << grad_b.str(),
                "bf16 gradients sum into f32 biases only, without a product term");
  dispatch_storage(grad.dtype(), "sum_leading", [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const S* pt = times ? static_cast<const S*>(times->raw_data()) : nullptr;  // (rows, nb)
    column_sums<A, 1>(rows, nb,
                      LeadingSumTerm<S>{static_cast<const S*>(grad.raw_data()), pt, nb},
                      grad_b.data<A>(), nullptr, grad.device(), "sum_leading");
  });
}

// Full sum in one block: fixed-order per-thread partials then a tree (deterministic).
template <class T>
__global__ void sum_kernel(const T* x, T* out, int64_t n, double factor) {
  __shared__ double partial[1024];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(x[i]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<T>(partial[0] * factor);
}

template <class T>
__global__ void fill_scalar_kernel(const T* g, T* out, int64_t n, double factor) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<T>(static_cast<double>(g[0]) * factor);
}

void sum_forward_cuda(const Tensor& x, double factor, Tensor& out) {
  if (x.dtype() == DType::F32)
    sum_kernel<<<1, 1024, 0, stream()>>>(x.data<float>(), out.data<float>(), x.numel(), factor);
  else
    sum_kernel<<<1, 1024, 0, stream()>>>(x.data<double>(), out.data<double>(), x.numel(), factor);
  SINKLAB_KERNEL_CHECK("sum");
}

void sum_backward_cuda(const Tensor& g, double factor, Tensor& gx) {
  const int64_t n = gx.numel();
  if (n == 0) return;
  if (g.dtype() == DType::F32)
    fill_scalar_kernel<<<blocks_for(n), 256, 0, stream()>>>(g.data<float>(), gx.data<float>(), n,
                                                            factor);
  else
    fill_scalar_kernel<<<blocks_for(n), 256, 0, stream()>>>(g.data<double>(), gx.data<double>(),
                                                            n, factor);
  SINKLAB_KERNEL_CHECK("sum backward");
}

}  // namespace

void install_elementwise_kernels() {
  ops::add_kernels.cuda_forward = add_cuda;
  ops::add_kernels.cuda_backward = sum_leading_cuda;
  ops::mul_kernels.cuda_forward = mul_cuda;
  ops::mul_kernels.cuda_backward = sum_leading_cuda;
  ops::scale_kernels.cuda_forward = scale_cuda;
  ops::scale_kernels.cuda_backward = scale_cuda;
  ops::sum_kernels.cuda_forward = sum_forward_cuda;
  ops::sum_kernels.cuda_backward = sum_backward_cuda;
}

}  // namespace sinklab::cuda
