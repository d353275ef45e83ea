#include "ops/cpu/activations.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/elementwise.h"

namespace sinklab::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;

double gelu_value(double x) {
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
}

double gelu_derivative(double x) {
  const double t = std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
  const double du_dx = kSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }  // exp overflow gives 0, no NaN

double silu_value(double x) { return x * sigmoid(x); }

double silu_derivative(double x) {
  const double s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}

// out[i] = fn(inputs[i]...) computed in double; all tensors contiguous with out's numel.
template <class Fn, class... Inputs>
void map_elements(const char* op, Tensor& out, Fn fn, const Inputs&... inputs) {
  dispatch_float(out.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    T* po = out.data<T>();                                              // (n)
    const auto in = std::make_tuple(inputs.template data<T>()...);      // each (n)
    parallel_for(out.numel(), [&](int64_t i) {
      po[i] = static_cast<T>(
          std::apply([&](auto... p) { return fn(static_cast<double>(p[i])...); }, in));
    }, kGrain);
  });
}
}  // namespace

void gelu_forward(const Tensor& x, Tensor& out) { map_elements("gelu", out, gelu_value, x); }

void gelu_backward(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  map_elements("gelu", grad_x, [](double g, double v) { return g * gelu_derivative(v); }, grad,
               x);
}

void silu_forward(const Tensor& x, Tensor& out) { map_elements("silu", out, silu_value, x); }

void silu_backward(const Tensor& grad, const Tensor& x, Tensor& grad_x) {
  map_elements("silu", grad_x, [](double g, double v) { return g * silu_derivative(v); }, grad,
               x);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  map_elements("swiglu", out, [](double a, double u) { return silu_value(a) * u; }, gate, up);
}

void swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up, Tensor* grad_gate,
                     Tensor* grad_up) {
  if (grad_gate)
    map_elements("swiglu", *grad_gate,
                 [](double g, double a, double u) { return g * u * silu_derivative(a); }, grad,
                 gate, up);
  if (grad_up)
    map_elements("swiglu", *grad_up, [](double g, double a) { return g * silu_value(a); }, grad,
                 gate);
}

namespace {
// fn(i, c) for every element i = r * F + c of a (rows, F) tensor, rows in parallel.
template <class Fn>
void for_each_in_rows(int64_t rows, int64_t F, Fn fn) {
  parallel_for(rows, [&](int64_t r) {
    for (int64_t c = 0; c < F; ++c) fn(r * F + c, c);
  }, std::max<int64_t>(1, kGrain / std::max<int64_t>(F, 1)));
}
}  // namespace

void bias_gelu_forward(const Tensor& x, const Tensor& bias, Tensor& out) {
  const int64_t rows = x.size(0), F = x.size(1);
  dispatch_float(x.dtype(), "bias_gelu", [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();     // (rows, F)
    const T* pb = bias.data<T>();  // (F)
    T* po = out.data<T>();         // (rows, F)
    for_each_in_rows(rows, F, [&](int64_t i, int64_t c) {
      const T v = px[i] + pb[c];
      po[i] = static_cast<T>(gelu_value(static_cast<double>(v)));
    });
  });
}

void bias_gelu_backward(const Tensor& grad, const Tensor& x, const Tensor& bias, Tensor& grad_x,
                        Tensor& grad_bias) {
  const int64_t rows = x.size(0), F = x.size(1);
  dispatch_float(x.dtype(), "bias_gelu", [&](auto zero) {
    using T = decltype(zero);
    const T* pg = grad.data<T>();  // (rows, F)
    const T* px = x.data<T>();     // (rows, F)
    const T* pb = bias.data<T>();  // (F)
    T* pgx = grad_x.data<T>();     // (rows, F)
    for_each_in_rows(rows, F, [&](int64_t i, int64_t c) {
      const T v = px[i] + pb[c];
      pgx[i] = static_cast<T>(static_cast<double>(pg[i]) *
                              gelu_derivative(static_cast<double>(v)));
    });
  });
  sum_leading(grad_x, nullptr, grad_bias);  // (F): each column's rows summed in order, in double
}

}  // namespace sinklab::cpu
