#include "ops/cpu/elementwise.h"

#include "core/parallel.h"
#include "core/dispatch.h"

namespace sinklab::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

template <class Combine>
void binary_broadcast(const Tensor& a, const Tensor& b, Tensor& out, const char* op,
                      Combine combine) {
  dispatch_float(a.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    const int64_t nb = b.numel(), rows = a.numel() / nb;
    parallel_for(rows, [&](int64_t r) {
      for (int64_t j = 0; j < nb; ++j) po[r * nb + j] = combine(pa[r * nb + j], pb[j]);
    }, kGrain / (nb + 1) + 1);
  });
}
}  // namespace

void add_forward(const Tensor& a, const Tensor& b, Tensor& out) {
  binary_broadcast(a, b, out, "add", [](auto x, auto y) { return x + y; });
}

void mul_forward(const Tensor& a, const Tensor& b, Tensor& out) {
  binary_broadcast(a, b, out, "mul", [](auto x, auto y) { return x * y; });
}

void scale_forward(const Tensor& a, double s, Tensor& out) {
  dispatch_float(a.dtype(), "scale", [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    T* po = out.data<T>();
    const T factor = static_cast<T>(s);
    parallel_for(a.numel(), [&](int64_t i) { po[i] = pa[i] * factor; }, kGrain);
  });
}

void sum_leading(const Tensor& grad, const Tensor* times, Tensor& grad_b) {
  dispatch_float(grad.dtype(), "sum_leading", [&](auto zero) {
    using T = decltype(zero);
    const T* g = grad.data<T>();
    const T* t = times ? times->data<T>() : nullptr;
    T* out = grad_b.data<T>();
    const int64_t nb = grad_b.numel(), rows = grad.numel() / nb;
    // Parallel over columns; each column sums its rows in order (deterministic).
    parallel_for(nb, [&](int64_t j) {
      double acc = 0;
      for (int64_t r = 0; r < rows; ++r)
        acc += static_cast<double>(g[r * nb + j]) * (t ? static_cast<double>(t[r * nb + j]) : 1.0);
      out[j] = static_cast<T>(acc);
    }, 64);
  });
}

}  // namespace sinklab::cpu
