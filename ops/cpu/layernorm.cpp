#include "ops/cpu/layernorm.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"

namespace sinklab::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per thread, at least
}  // namespace

void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                       Tensor& y, Tensor& mean, Tensor& rstd) {
  dispatch_float(x.dtype(), "layernorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t C = x.size(-1), rows = x.numel() / C;
    const T* px = x.data<T>();                                 // (rows, C)
    const T* pw = weight.data<T>();                            // (C)
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;   // (C) or none
    T* py = y.data<T>();                                       // (rows, C)
    T* pmean = mean.data<T>();                                 // (rows)
    T* prstd = rstd.data<T>();                                 // (rows)
    parallel_for(rows, [&](int64_t r) {
      const T* xr = px + r * C;  // (C)
      double sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += xr[c];
      const double mu = sum / static_cast<double>(C);
      double sq = 0;  // two passes: no cancellation when |mean| >> std
      for (int64_t c = 0; c < C; ++c) sq += (xr[c] - mu) * (xr[c] - mu);
      const double inv = 1.0 / std::sqrt(sq / static_cast<double>(C) + eps);
      pmean[r] = static_cast<T>(mu);
      prstd[r] = static_cast<T>(inv);
      for (int64_t c = 0; c < C; ++c)
        py[r * C + c] = static_cast<T>((xr[c] - mu) * inv * pw[c] + (pb ? pb[c] : 0.0));
    }, kGrain / (C + 1) + 1);
  });
}

void add_layernorm_forward(const Tensor& x, const Tensor& delta, const Tensor& weight,
                           const Tensor& bias, double eps, Tensor& sum, Tensor& y, Tensor& mean,
                           Tensor& rstd) {
  add_forward(x, delta, sum);  // the residual add, as ops::add computes it
  layernorm_forward(sum, weight, bias, eps, y, mean, rstd);
}

void layernorm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd, const Tensor* residual,
                        Tensor* grad_x, Tensor* grad_x_operand, Tensor* grad_weight,
                        Tensor* grad_bias) {
  dispatch_float(x.dtype(), "layernorm", [&](auto zero) {
    using T = decltype(zero);
    const int64_t C = x.size(-1), rows = x.numel() / C;
    const T* pdy = grad.data<T>();     // (rows, C)
    const T* px = x.data<T>();         // (rows, C)
    const T* pw = weight.data<T>();    // (C)
    const T* pmean = mean.data<T>();   // (rows)
    const T* prstd = rstd.data<T>();   // (rows)
    if (grad_x) {
      T* pdx = grad_x->data<T>();                                 // (rows, C)
      const T* pres = residual ? residual->data<T>() : nullptr;  // (rows, C) or none
      parallel_for(rows, [&](int64_t r) {
        const double mu = pmean[r], inv = prstd[r];
        const T* xr = px + r * C;     // (C)
        const T* dyr = pdy + r * C;   // (C)
        double sum_g = 0, sum_g_xhat = 0;
        for (int64_t c = 0; c < C; ++c) {
          const double g = static_cast<double>(pw[c]) * dyr[c];
          sum_g += g;
          sum_g_xhat += g * (xr[c] - mu) * inv;
        }
        const double mean_g = sum_g / static_cast<double>(C);
        const double mean_g_xhat = sum_g_xhat / static_cast<double>(C);
        for (int64_t c = 0; c < C; ++c) {
          const double g = static_cast<double>(pw[c]) * dyr[c];
          const double xhat = (xr[c] - mu) * inv;
          const T v = static_cast<T>(inv * (g - mean_g - xhat * mean_g_xhat));
          // The residual's gradient plus this one, rounded in T as the engine's sum would be.
          pdx[r * C + c] = pres ? static_cast<T>(pres[r * C + c] + v) : v;
        }
      }, kGrain / (C + 1) + 1);
      if (grad_x_operand) round_to_bf16(*grad_x, *grad_x_operand);  // what the products round
    }
    if (grad_weight || grad_bias) {
      T* pdw = grad_weight ? grad_weight->data<T>() : nullptr;  // (C)
      T* pdb = grad_bias ? grad_bias->data<T>() : nullptr;      // (C)
      // Parallel over blocks of kBlock channels; a block walks the rows in order, reading each
      // row's stretch contiguously, and every channel sums its rows in order (deterministic).
      constexpr int64_t kBlock = 64;
      parallel_for((C + kBlock - 1) / kBlock, [&](int64_t blk) {
        const int64_t c0 = blk * kBlock, width = std::min(kBlock, C - c0);
        double acc_w[kBlock] = {}, acc_b[kBlock] = {};
        for (int64_t r = 0; r < rows; ++r) {
          const double mu = pmean[r], inv = prstd[r];
          const T* dyr = pdy + r * C + c0;  // (width)
          const T* xr = px + r * C + c0;    // (width)
          for (int64_t j = 0; j < width; ++j) {
            const double dy = dyr[j];
            acc_w[j] += dy * (xr[j] - mu) * inv;
            acc_b[j] += dy;
          }
        }
        for (int64_t j = 0; j < width; ++j) {
          if (pdw) pdw[c0 + j] = static_cast<T>(acc_w[j]);
          if (pdb) pdb[c0 + j] = static_cast<T>(acc_b[j]);
        }
      }, 1);
    }
  });
}

}  // namespace sinklab::cpu
