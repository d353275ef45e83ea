// CUDA twins of ops/cpu/activations: gelu (tanh approximation), silu and swiglu, forward and
// backward. Elementwise over contiguous tensors of one shape, four elements per thread
// (cuda/elementwise_map.cuh), f32 and f64; the math is in the tensor's type with the accurate
// (non-fast-math) tanh/exp.
#include <cstdint>

#include "cuda/check.h"
#include "core/dispatch.h"
#include "cuda/elementwise_map.cuh"
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
// Element maps (cuda/elementwise_map.cuh runs them four elements per thread).

struct GeluValue {
  template <class T> __device__ T operator()(T x) const { return gelu_value(x); }
};
struct GeluGrad {  // (upstream gradient, x) -> gradient of x
  template <class T> __device__ T operator()(T g, T x) const { return g * gelu_derivative(x); }
};
struct SiluValue {
  template <class T> __device__ T operator()(T x) const { return silu_value(x); }
};
struct SiluGrad {
  template <class T> __device__ T operator()(T g, T x) const { return g * silu_derivative(x); }
};
struct SwigluValue {  // (gate, up) -> silu(gate) * up
  template <class T> __device__ T operator()(T gate, T up) const { return silu_value(gate) * up; }
};

// grad, gate, up (n); grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate), each (n)
// or null (skipped).
template <class T>
__global__ void swiglu_backward_kernel(const T* grad, const T* gate, const T* up, T* grad_gate,
                                       T* grad_up, int64_t n, bool packed) {
  const int64_t i = first_of_four();
  if (i >= n) return;
  const Four<T> g = load_four(grad, i, n, packed), a = load_four(gate, i, n, packed);
  if (grad_gate) {
    const Four<T> u = load_four(up, i, n, packed);
    Four<T> out;
    for (int j = 0; j < 4; ++j) out.v[j] = g.v[j] * u.v[j] * silu_derivative(a.v[j]);
    store_four(grad_gate, i, n, packed, out);
  }
  if (grad_up) {
    Four<T> out;
    for (int j = 0; j < 4; ++j) out.v[j] = g.v[j] * silu_value(a.v[j]);
    store_four(grad_up, i, n, packed, out);
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers (the signatures of ops/activations.h).

void gelu_forward_cuda(const Tensor& x, Tensor& out) { launch_unary_map<GeluValue>(x, out, "gelu forward"); }

void gelu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  launch_binary_map<GeluGrad>(grad, x, grad_x, "gelu backward");
}

void silu_forward_cuda(const Tensor& x, Tensor& out) { launch_unary_map<SiluValue>(x, out, "silu forward"); }

void silu_backward_cuda(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  launch_binary_map<SiluGrad>(grad, x, grad_x, "silu backward");
}

void swiglu_forward_cuda(const Tensor& gate, const Tensor& up, Tensor& out) {
  launch_binary_map<SwigluValue>(gate, up, out, "swiglu forward");
}

void swiglu_backward_cuda(const Tensor& grad, const Tensor& gate, const Tensor& up,
                          Tensor* grad_gate, Tensor* grad_up) {
  const int64_t n = gate.numel();
  if (n == 0 || (!grad_gate && !grad_up)) return;
  void* pgg = grad_gate ? grad_gate->raw_data() : nullptr;  // (n) or none
  void* pgu = grad_up ? grad_up->raw_data() : nullptr;      // (n) or none
  const bool packed = aligned16({grad.raw_data(), gate.raw_data(), up.raw_data(), pgg, pgu});
  dispatch_float(gate.dtype(), "swiglu", [&](auto zero) {
    using T = decltype(zero);
    swiglu_backward_kernel<T><<<blocks_for_fours(n, kThreads), kThreads, 0, stream()>>>(
        grad.data<T>(), gate.data<T>(), up.data<T>(), static_cast<T*>(pgg),
        static_cast<T*>(pgu), n, packed);
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
