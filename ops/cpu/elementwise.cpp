#include "ops/cpu/elementwise.h"

#include <algorithm>

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
    // Parallel over blocks of kBlock columns; a block walks the rows in order, reading each row's
    // stretch of columns contiguously, and every column sums its rows in order (deterministic).
    constexpr int64_t kBlock = 64;
    parallel_for((nb + kBlock - 1) / kBlock, [&](int64_t blk) {
      const int64_t j0 = blk * kBlock, width = std::min(kBlock, nb - j0);
      double acc[kBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* gr = g + r * nb + j0;                   // (width)
        const T* tr = t ? t + r * nb + j0 : nullptr;    // (width) or none
        for (int64_t j = 0; j < width; ++j)
          acc[j] += static_cast<double>(gr[j]) * (tr ? static_cast<double>(tr[j]) : 1.0);
      }
      for (int64_t j = 0; j < width; ++j) out[j0 + j] = static_cast<T>(acc[j]);
    }, 1);
  });
}

}  // namespace sinklab::cpu
