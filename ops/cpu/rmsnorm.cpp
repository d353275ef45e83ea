#include "ops/cpu/rmsnorm.h"

#include <cmath>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/statistics.h"

namespace sinklab::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per thread, at least
}  // namespace

void rmsnorm_forward(const Tensor& x, const Tensor& gain, double eps, Tensor& y, Tensor& rstd,
                     ops::NormRowStatistics* stats) {
  dispatch_float(x.dtype(), "rmsnorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t D = x.size(-1), rows = x.numel() / D;
    const int64_t P = gain.defined() ? gain.numel() : D;
    const T* px = x.data<T>();                                  // (rows, D)
    const T* pg = gain.defined() ? gain.data<T>() : nullptr;    // (P) or none
    T* py = y.data<T>();                                        // (rows, D)
    T* prstd = rstd.data<T>();                                  // (rows)
    parallel_for(rows, [&](int64_t r) {
      const T* xr = px + r * D;                         // (D)
      const T* gr = pg ? pg + (r * D) % P : nullptr;    // (D) slice of the gain
      double sq = 0;
      for (int64_t d = 0; d < D; ++d) sq += static_cast<double>(xr[d]) * xr[d];
      const double inv = 1.0 / std::sqrt(sq / static_cast<double>(D) + eps);
      prstd[r] = static_cast<T>(inv);
      for (int64_t d = 0; d < D; ++d)
        py[r * D + d] = static_cast<T>(xr[d] * inv * (gr ? static_cast<double>(gr[d]) : 1.0));
    }, kGrain / (D + 1) + 1);
  });
  if (stats) {
    const int64_t D = x.size(-1), rows = x.numel() / D;
    row_statistics(x.reshape_view({rows, D}), stats->input);
    row_statistics(y.reshape_view({rows, D}), stats->output);
  }
}

void add_rmsnorm_forward(const Tensor& x, const Tensor& delta, const Tensor& gain, double eps,
                         Tensor& sum, Tensor& y, Tensor& rstd) {
  add_forward(x, delta, sum);  // the residual add, as ops::add computes it
  rmsnorm_forward(sum, gain, eps, y, rstd);
}

void rmsnorm_backward(const Tensor& grad, const Tensor& x, const Tensor& gain,
                      const Tensor& rstd, const Tensor* residual, Tensor* grad_x,
                      Tensor* grad_x_operand, Tensor* grad_gain) {
  dispatch_float(x.dtype(), "rmsnorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = x.numel(), D = x.size(-1), rows = n / D;
    const int64_t P = gain.defined() ? gain.numel() : D;
    const T* pdy = grad.data<T>();                              // (rows, D)
    const T* px = x.data<T>();                                  // (rows, D)
    const T* pg = gain.defined() ? gain.data<T>() : nullptr;    // (P) or none
    const T* prstd = rstd.data<T>();                            // (rows)
    if (grad_x) {
      T* pdx = grad_x->data<T>();                                 // (rows, D)
      const T* pres = residual ? residual->data<T>() : nullptr;  // (rows, D) or none
      parallel_for(rows, [&](int64_t r) {
        const T* xr = px + r * D;                         // (D)
        const T* dyr = pdy + r * D;                       // (D)
        const T* gr = pg ? pg + (r * D) % P : nullptr;    // (D) slice of the gain
        const double inv = prstd[r];
        double dot = 0;  // sum_d x_d * g_d with g = gain * dy
        for (int64_t d = 0; d < D; ++d)
          dot += static_cast<double>(xr[d]) * dyr[d] * (gr ? static_cast<double>(gr[d]) : 1.0);
        const double coef = inv * inv * inv * dot / static_cast<double>(D);
        for (int64_t d = 0; d < D; ++d) {
          const double g = static_cast<double>(dyr[d]) * (gr ? static_cast<double>(gr[d]) : 1.0);
          const T v = static_cast<T>(inv * g - coef * xr[d]);
          // The residual's gradient plus this one, rounded in T as the engine's sum would be.
          pdx[r * D + d] = pres ? static_cast<T>(pres[r * D + d] + v) : v;
        }
      }, kGrain / (D + 1) + 1);
      if (grad_x_operand) round_to_bf16(*grad_x, *grad_x_operand);  // what the products round
    }
    if (grad_gain) {
      T* pdg = grad_gain->data<T>();  // (P)
      // Parallel over gain elements; each sums the rows that use it, in order (deterministic).
      parallel_for(P, [&](int64_t p) {
        double acc = 0;
        for (int64_t i = p; i < n; i += P)
          acc += static_cast<double>(pdy[i]) * px[i] * static_cast<double>(prstd[i / D]);
        pdg[p] = static_cast<T>(acc);
      }, 64);
    }
  });
}

}  // namespace sinklab::cpu
