#include "ops/cpu/reduce.h"

#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"

namespace sinklab::cpu {

void sum_forward(const Tensor& x, double factor, Tensor& out) {
  dispatch_float(x.dtype(), "sum", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    const int64_t n = x.numel();
    constexpr int64_t kChunk = 1 << 16;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);  // fixed chunking: same result for any thread count
    parallel_for(chunks, [&](int64_t c) {
      double acc = 0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) acc += p[i];
      partial[c] = acc;
    });
    double total = 0;
    for (double v : partial) total += v;
    out.data<T>()[0] = static_cast<T>(total * factor);
  });
}

void sum_backward(const Tensor& grad_out, double factor, Tensor& grad_x) {
  dispatch_float(grad_x.dtype(), "sum", [&](auto zero) {
    using T = decltype(zero);
    const T g = static_cast<T>(grad_out.data<T>()[0] * factor);
    T* p = grad_x.data<T>();
    parallel_for(grad_x.numel(), [&](int64_t i) { p[i] = g; }, 1 << 14);
  });
}

}  // namespace sinklab::cpu
