#include "ops/cpu/activations.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <utility>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/cpu_clones.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/fast_exp.h"

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

// Rows of a map's output or operand: element (r, c) at first + r * stride + c of a contiguous
// tensor's elements. A whole tensor is one row; a packed gate_up's halves start at 0 and F.
struct Rows {
  Tensor tensor;  // a handle: an output is written through it
  int64_t first;
  int64_t stride;
};

Rows whole(const Tensor& t) { return {t, 0, t.numel()}; }

constexpr int64_t kTile = 1024;  // columns of one row that one parallel task maps

// out(r, c) = fn(inputs(r, c)...) computed in double, for r < rows, c < width.
template <class Fn, class... Inputs>
void map_rows(const char* op, int64_t rows, int64_t width, Fn fn, Rows out,
              const Inputs&... inputs) {
  if (rows == 0 || width == 0) return;
  dispatch_float(out.tensor.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    T* po = out.tensor.template data<T>() + out.first;  // (rows, width), rows out.stride apart
    // (rows, width) each, rows their stride apart
    const auto in = std::make_tuple(
        std::make_pair(inputs.tensor.template data<T>() + inputs.first, inputs.stride)...);
    const int64_t tiles = (width + kTile - 1) / kTile;  // per row
    parallel_for(rows * tiles, [&](int64_t k) {
      const int64_t r = k / tiles, c0 = (k - r * tiles) * kTile;
      const int64_t c1 = std::min(width, c0 + kTile);
      T* o = po + r * out.stride;  // (width) row r
      const auto row = std::apply(
          [&](auto... p) { return std::make_tuple((p.first + r * p.second)...); }, in);
      for (int64_t c = c0; c < c1; ++c)
        o[c] = static_cast<T>(
            std::apply([&](auto... p) { return fn(static_cast<double>(p[c])...); }, row));
    }, kGrain / kTile);
  });
}

// out[i] = fn(inputs[i]...) computed in double; all tensors contiguous with out's numel.
template <class Fn, class... Inputs>
void map_elements(const char* op, Tensor& out, Fn fn, const Inputs&... inputs) {
  map_rows(op, 1, out.numel(), fn, whole(out), whole(inputs)...);
}

// swiglu over (rows, F) operands, shared by swiglu (one row) and swiglu_packed (gate and up the
// halves of each row): out = silu(gate) * up; grad_gate = grad * up * silu'(gate) and grad_up =
// grad * silu(gate), each skipped when absent.
void swiglu_rows_forward(const char* op, int64_t rows, int64_t F, const Rows& gate,
                         const Rows& up, const Rows& out) {
  map_rows(op, rows, F, [](double a, double u) { return silu_value(a) * u; }, out, gate, up);
}

void swiglu_rows_backward(const char* op, int64_t rows, int64_t F, const Rows& grad,
                          const Rows& gate, const Rows& up, const std::optional<Rows>& grad_gate,
                          const std::optional<Rows>& grad_up) {
  if (grad_gate)
    map_rows(op, rows, F,
             [](double g, double a, double u) { return g * u * silu_derivative(a); }, *grad_gate,
             grad, gate, up);
  if (grad_up)
    map_rows(op, rows, F, [](double g, double a) { return g * silu_value(a); }, *grad_up, grad,
             gate);
}

// A packed gate_up's rows: rows of its output, F = half its last dim.
struct PackedRows {
  int64_t rows, F;
};
PackedRows packed_rows(const Tensor& out) {  // out (..., F)
  const int64_t F = out.size(-1);
  return {F ? out.numel() / F : 0, F};
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
  swiglu_rows_forward("swiglu", 1, out.numel(), whole(gate), whole(up), whole(out));
}

void swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up, Tensor* grad_gate,
                     Tensor* grad_up) {
  std::optional<Rows> gg, gu;
  if (grad_gate) gg = whole(*grad_gate);
  if (grad_up) gu = whole(*grad_up);
  swiglu_rows_backward("swiglu", 1, gate.numel(), whole(grad), whole(gate), whole(up), gg, gu);
}

void swiglu_packed_forward(const Tensor& gate_up, Tensor& out) {
  const auto [rows, F] = packed_rows(out);
  // gate_up (rows, 2F): gate | up; out (rows, F)
  swiglu_rows_forward("swiglu_packed", rows, F, {gate_up, 0, 2 * F}, {gate_up, F, 2 * F},
                      {out, 0, F});
}

void swiglu_packed_backward(const Tensor& grad, const Tensor& gate_up, Tensor& grad_gate_up) {
  const auto [rows, F] = packed_rows(grad);
  // grad (rows, F); gate_up and grad_gate_up (rows, 2F): gate | up
  swiglu_rows_backward("swiglu_packed", rows, F, {grad, 0, F}, {gate_up, 0, 2 * F},
                       {gate_up, F, 2 * F}, Rows{grad_gate_up, 0, 2 * F},
                       Rows{grad_gate_up, F, 2 * F});
}

namespace {
// gelu and its derivative in the element type T (f32 math for f32, as the CUDA kernels): with
// u = sqrt(2/pi) (x + 0.044715 x^3) and s = sigmoid(2u) = (1 + tanh(u)) / 2,
//   gelu(x) = x s,  gelu'(x) = s + 2 x s (1 - s) du/dx   (1 - tanh^2 = 4 s (1 - s)).
// One exp per element, no tanh; exp(-2u) overflowing to inf gives s = 0, no NaN.
template <class T>
T gelu_sigmoid(T x) {
  const T u = T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x);
  return T(1) / (T(1) + fast_exp(T(-2) * u));
}

template <class T>
T gelu_in(T x) {
  return x * gelu_sigmoid(x);
}

template <class T>
T gelu_derivative_in(T x) {
  const T s = gelu_sigmoid(x);
  const T du_dx = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * x * x);
  return s + T(2) * x * s * (T(1) - s) * du_dx;
}

// One row of bias_gelu, forward (out = gelu(x + b)) and backward (gx = g gelu'(x + b)), each
// (F). Built for AVX2 and baseline in f32 (SINKLAB_CPU_CLONES): the loops vectorise.
template <class T>
__attribute__((always_inline)) inline void bias_gelu_row(const T* x, const T* b, T* out,
                                                         int64_t F) {
  for (int64_t c = 0; c < F; ++c) out[c] = gelu_in<T>(x[c] + b[c]);
}
template <class T>
__attribute__((always_inline)) inline void bias_gelu_grad_row(const T* g, const T* x, const T* b,
                                                              T* gx, int64_t F) {
  for (int64_t c = 0; c < F; ++c) gx[c] = g[c] * gelu_derivative_in<T>(x[c] + b[c]);
}
SINKLAB_CPU_CLONES void bias_gelu_row_of(const float* x, const float* b, float* out, int64_t F) {
  bias_gelu_row(x, b, out, F);
}
void bias_gelu_row_of(const double* x, const double* b, double* out, int64_t F) {
  bias_gelu_row(x, b, out, F);
}
SINKLAB_CPU_CLONES void bias_gelu_grad_row_of(const float* g, const float* x, const float* b,
                                              float* gx, int64_t F) {
  bias_gelu_grad_row(g, x, b, gx, F);
}
void bias_gelu_grad_row_of(const double* g, const double* x, const double* b, double* gx,
                           int64_t F) {
  bias_gelu_grad_row(g, x, b, gx, F);
}

int64_t rows_per_thread(int64_t F) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(F, 1)); }
}  // namespace

void bias_gelu_forward(const Tensor& x, const Tensor& bias, Tensor& out) {
  const int64_t rows = x.size(0), F = x.size(1);
  dispatch_float(x.dtype(), "bias_gelu", [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();     // (rows, F)
    const T* pb = bias.data<T>();  // (F)
    T* po = out.data<T>();         // (rows, F)
    parallel_for(rows, [&](int64_t r) { bias_gelu_row_of(px + r * F, pb, po + r * F, F); },
                 rows_per_thread(F));
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
    parallel_for(rows, [&](int64_t r) {
      bias_gelu_grad_row_of(pg + r * F, px + r * F, pb, pgx + r * F, F);
    }, rows_per_thread(F));
  });
  sum_leading(grad_x, nullptr, grad_bias);  // (F): each column's rows summed in order, in double
}

}  // namespace sinklab::cpu
