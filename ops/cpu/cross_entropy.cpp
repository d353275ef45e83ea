#include "ops/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"

namespace sinklab::cpu {

namespace {

// Rows per thread chunk: about 16k logits of work.
int64_t row_grain(int64_t V) { return 1 + (1 << 14) / V; }

// Number of rows whose target is not ignore_index.
int64_t count_targets(const int32_t* targets, int64_t N, int32_t ignore_index) {
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r) count += targets[r] != ignore_index;
  return count;
}

}  // namespace

void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                           Tensor& lse, Tensor& loss, Tensor* grad_logits) {
  const int64_t N = logits.size(0), V = logits.size(1);
  const int32_t* pt = targets.data<int32_t>();  // (N)
  // Serial check first: nothing may throw inside the parallel loop.
  for (int64_t r = 0; r < N; ++r)
    SINKLAB_CHECK(pt[r] == ignore_index || (pt[r] >= 0 && pt[r] < V), ValueError,
                  "cross_entropy: target " << pt[r] << " at row " << r << " of logits ("
                                           << N << ", " << V << ") is outside [0, V) for V = "
                                           << V << " and is not ignore_index " << ignore_index,
                  "targets must be class indices 0 <= target < V, or ignore_index");
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto zero) {
    using Real = decltype(zero);
    const Real* px = logits.data<Real>();  // (N, V)
    Real* plse = lse.data<Real>();         // (N)
    std::vector<double> row_loss(N, 0.0);  // (N) 0 for ignored rows
    parallel_for(N, [&](int64_t r) {
      const Real* x = px + r * V;  // (V)
      double m = -INFINITY;
      for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<double>(x[v]));
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(x[v]) - m);
      const double row_lse = m + std::log(sum);
      plse[r] = static_cast<Real>(row_lse);
      if (pt[r] != ignore_index) row_loss[r] = row_lse - static_cast<double>(x[pt[r]]);
    }, row_grain(V));
    double total = 0;
    for (int64_t r = 0; r < N; ++r) total += row_loss[r];  // row order: deterministic
    const int64_t count = count_targets(pt, N, ignore_index);
    loss.data<Real>()[0] = static_cast<Real>(count > 0 ? total / static_cast<double>(count) : 0.0);
  });
  if (grad_logits) {  // the backward's gradient for g = 1
    const Tensor one = Tensor::full({}, 1.0, loss.dtype(), loss.device());  // ()
    cross_entropy_backward(logits, targets, ignore_index, lse, one, *grad_logits, false);
  }
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                            const Tensor& lse, const Tensor& grad_loss, Tensor& grad_logits,
                            bool precomputed) {
  dispatch_float(logits.dtype(), "cross_entropy backward", [&](auto zero) {
    using Real = decltype(zero);
    if (precomputed) {  // the forward's gradient for g = 1, times g
      const Real g = grad_loss.data<Real>()[0];
      if (g == Real(1)) return;
      Real* pg = grad_logits.data<Real>();  // (N, V)
      parallel_for(grad_logits.numel(), [&](int64_t i) { pg[i] *= g; }, 1 << 14);
      return;
    }
    const int64_t N = logits.size(0), V = logits.size(1);
    const Real* px = logits.data<Real>();         // (N, V)
    const int32_t* pt = targets.data<int32_t>();  // (N)
    const Real* plse = lse.data<Real>();          // (N)
    Real* pg = grad_logits.data<Real>();          // (N, V)
    const int64_t count = count_targets(pt, N, ignore_index);
    // g / count: every counted row carries the same weight in the mean.
    const double row_weight =
        count > 0 ? static_cast<double>(grad_loss.data<Real>()[0]) / static_cast<double>(count)
                  : 0.0;
    parallel_for(N, [&](int64_t r) {
      Real* gr = pg + r * V;  // (V)
      if (pt[r] == ignore_index) {
        std::fill(gr, gr + V, Real(0));
        return;
      }
      const Real* x = px + r * V;  // (V)
      const double row_lse = static_cast<double>(plse[r]);
      for (int64_t v = 0; v < V; ++v) {
        const double p = std::exp(static_cast<double>(x[v]) - row_lse);  // softmax, recomputed
        gr[v] = static_cast<Real>((p - (v == pt[r] ? 1.0 : 0.0)) * row_weight);
      }
    }, row_grain(V));
  });
}

}  // namespace sinklab::cpu
