#include "ops/cpu/rope.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"

namespace sinklab::cpu {

namespace {

// Rotates every pair (x[i], x[i + HS/2]) of every (b, t, h) row by sign * angle(t, i).
void rotate(const Tensor& x, double theta, int64_t position_offset, double sign, Tensor& out,
            const char* op) {
  dispatch_float(x.dtype(), op, [&](auto zero) {
    using Real = decltype(zero);
    const int64_t B = x.size(0), T = x.size(1), NH = x.size(2), HS = x.size(3), half = HS / 2;
    // cos/sin of angle = (t + offset) * theta^(-2i/HS), computed once per call.
    std::vector<double> cos_table(T * half), sin_table(T * half);  // (T, HS/2) each
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / HS);
        const double angle = static_cast<double>(t + position_offset) * freq;
        cos_table[t * half + i] = std::cos(angle);
        sin_table[t * half + i] = sign * std::sin(angle);
      }
    const Real* px = x.data<Real>();  // (B, T, NH, HS)
    Real* po = out.data<Real>();      // (B, T, NH, HS)
    parallel_for(B * T, [&](int64_t bt) {
      const int64_t t = bt % T;
      const double* c = cos_table.data() + t * half;  // (HS/2)
      const double* s = sin_table.data() + t * half;  // (HS/2)
      for (int64_t h = 0; h < NH; ++h) {
        const Real* xr = px + (bt * NH + h) * HS;  // (HS) one head of one position
        Real* orow = po + (bt * NH + h) * HS;      // (HS)
        for (int64_t i = 0; i < half; ++i) {
          const double lo = xr[i], hi = xr[i + half];
          orow[i] = static_cast<Real>(lo * c[i] - hi * s[i]);
          orow[i + half] = static_cast<Real>(hi * c[i] + lo * s[i]);
        }
      }
    }, 1 + (1 << 14) / (NH * HS + 1));
  });
}

}  // namespace

void rope_forward(const Tensor& x, double theta, int64_t position_offset, Tensor& out) {
  rotate(x, theta, position_offset, +1.0, out, "rope");
}

void rope_backward(const Tensor& grad, double theta, int64_t position_offset, Tensor& out) {
  rotate(grad, theta, position_offset, -1.0, out, "rope backward");
}

}  // namespace sinklab::cpu
