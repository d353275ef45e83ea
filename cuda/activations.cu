// CUDA twins of ops/cpu/activations: gelu (tanh approximation), silu and swiglu, forward and
// backward. Elementwise over contiguous tensors of one shape, one thread per element, f32 and
// f64; the math is in the tensor's type with the accurate (non-fast-math) tanh/exp.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/dispatch.h"
#include "cuda/runtime.h"
#include "ops/activations.h"

namespace sinklab::cuda {

namespace {

constexpr int kThreads = 256;

template <class T> struct Consts;
template <> struct Consts<float> {
  static constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2 / pi)
  static constexpr float kCubic = 0.044715f;
};
template <> struct Consts<double> {
  static constexpr double kSqrt2OverPi = 0.79788456080286535588;
  static constexpr double kCubic = 0.044715;
};

__device__ __forceinline__ float tanh_t(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_t(double v) { return tanh(v); }
__device__ __forceinline__ float exp_t(float v) { return expf(v); }
__device__ __forceinline__ double exp_t(double v) { return exp(v); }

template <class T>
__device__ __forceinline__ T gelu_value(T x) {
  const T t = tanh_t(Consts<T>::kSqrt2OverPi * (x + Consts<T>::kCubic * x * x * x));
  return T(0.5) * x * (T(1) + t);
}

template <class T>
__device__ __forceinline__ T gelu_derivative(T x) {
  const T t = tanh_t(Consts<T>::kSqrt2OverPi * (x + Consts<T>::kCubic * x * x * x));
  const T du_dx = Consts<T>::kSqrt2OverPi * (T(1) + T(3) * Consts<T>::kCubic * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du_dx;
}

// exp overflow gives 1 / inf = 0: no NaN for very negative x.
template <class T>
__device__ __forceinline__ T sigmoid(T x) { return T(1) / (T(1) + exp_t(-x)); }

template <class T>
__device__ __forceinline__ T silu_value(T x) { return x * sigmoid(x); }

template <class T>
__device__ __forceinline__ T silu_derivative(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// ---------------------------------------------------------------------------------------------
// Kernels: x, out, grad, grad_x all (n).

template <class T>
__global__ void gelu_forward_kernel(const T* x, T* out, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = gelu_value(x[i]);
}

template <class T>
__global__ void gelu_backward_kernel(const T* grad, const T* x, T* grad_x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) grad_x[i] = grad[i] * gelu_derivative(x[i]);
}

template <class T>
__global__ void silu_forward_kernel(const T* x, T* out, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = silu_value(x[i]);
}

template <class T>
__global__ void silu_backward_kernel(const T* grad, const T* x, T* grad_x, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) grad_x[i] = grad[i] * silu_derivative(x[i]);
}

// gate, up, out (n).
template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = silu_value(gate[i]) * up[i];
}

// grad, gate, up (n); grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate), each (n)
// or null (skipped).
template <class T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* grad_gate,
                                       T* grad_up, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const T g = grad[i], a = gate[i];
  if (grad_gate) grad_gate[i] = g * up[i] * silu_derivative(a);
  if (grad_up) grad_up[i] = g * silu_value(a);
}

// ---------------------------------------------------------------------------------------------
// Launchers (the signatures of ops/activations.h).

void gelu_forward_cuda(const Tensor& x, Tensor& out) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype(), "gelu", [&](auto zero) {
    using T = decltype(zero);
    gelu_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        x.data<T>() /* (n) */, out.data<T>() /* (n) */, n);
    SINKLAB_KERNEL_CHECK("gelu forward");
  });
}

void gelu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype(), "gelu", [&](auto zero) {
    using T = decltype(zero);
    gelu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        grad.data<T>() /* (n) */, x.data<T>() /* (n) */, grad_x.data<T>() /* (n) */, n);
    SINKLAB_KERNEL_CHECK("gelu backward");
  });
}

void silu_forward_cuda(const Tensor& x, Tensor& out) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype(), "silu", [&](auto zero) {
    using T = decltype(zero);
    silu_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        x.data<T>() /* (n) */, out.data<T>() /* (n) */, n);
    SINKLAB_KERNEL_CHECK("silu forward");
  });
}

void silu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype(), "silu", [&](auto zero) {
    using T = decltype(zero);
    silu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        grad.data<T>() /* (n) */, x.data<T>() /* (n) */, grad_x.data<T>() /* (n) */, n);
    SINKLAB_KERNEL_CHECK("silu backward");
  });
}

void swiglu_forward_cuda(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_float(gate.dtype(), "swiglu", [&](auto zero) {
    using T = decltype(zero);
    swiglu_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        gate.data<T>() /* (n) */, up.data<T>() /* (n) */, out.data<T>() /* (n) */, n);
    SINKLAB_KERNEL_CHECK("swiglu forward");
  });
}

void swiglu_backward_cuda(const Tensor& grad, const Tensor& gate, const Tensor& up,
                          Tensor* grad_gate, Tensor* grad_up) {
  const int64_t n = gate.numel();
  if (n == 0 || (!grad_gate && !grad_up)) return;
  dispatch_float(gate.dtype(), "swiglu", [&](auto zero) {
    using T = decltype(zero);
    swiglu_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        grad.data<T>(),                                   // (n)
        gate.data<T>(),                                   // (n)
        up.data<T>(),                                     // (n)
        grad_gate ? grad_gate->data<T>() : nullptr,       // (n) or none
        grad_up ? grad_up->data<T>() : nullptr,           // (n) or none
        n);
    SINKLAB_KERNEL_CHECK("swiglu backward");
  });
}

}  // namespace

void install_activation_kernels() {
  ops::gelu_kernels.cuda_forward = gelu_forward_cuda;
  ops::gelu_kernels.cuda_backward = gelu_backward_cuda;
  ops::silu_kernels.cuda_forward = silu_forward_cuda;
  ops::silu_kernels.cuda_backward = silu_backward_cuda;
  ops::swiglu_kernels.cuda_forward = swiglu_forward_cuda;
  ops::swiglu_kernels.cuda_backward = swiglu_backward_cuda;
}

}  // namespace sinklab::cuda
