#include "ops/cpu/rope.h"

#include <cmath>
#include <vector>

#include "core/dispatch.h"
#include "core/parallel.h"

namespace sinklab::cpu {

namespace {

// The rotated heads: `rows` positions (b, t) of `heads` heads of HS values each, a position's
// heads side by side from element row * stride (of the input and of the output). rope's x
// (B, T, NH, HS) is NH heads a row, stride NH * HS; rope_qkv's qkv (B, T, 3C) is q's NH heads
// then k's, stride 3C.
struct RopeRows {
  int64_t rows, T, heads, HS, stride;
};

// Rotates every pair (x[i], x[i + HS/2]) of every head by sign * angle(t, i) into out.
void rotate(const Tensor& x, const RopeRows& g, double theta, int64_t position_offset,
            double sign, Tensor& out, const char* op) {
  dispatch_float(x.dtype(), op, [&](auto zero) {
    using Real = decltype(zero);
    const int64_t T = g.T, HS = g.HS, half = HS / 2;
    // cos/sin of angle = (t + offset) * theta^(-2i/HS), computed once per call.
    std::vector<double> cos_table(T * half), sin_table(T * half);  // (T, HS/2) each
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / HS);
        const double angle = static_cast<double>(t + position_offset) * freq;
        cos_table[t * half + i] = std::cos(angle);
        sin_table[t * half + i] = sign * std::sin(angle);
      }
    const Real* px = x.data<Real>();  // (rows, stride): heads (heads, HS) first in each row
    Real* po = out.data<Real>();      // (rows, stride) likewise
    parallel_for(g.rows, [&](int64_t bt) {
      const int64_t t = bt % T;
      const double* c = cos_table.data() + t * half;  // (HS/2)
      const double* s = sin_table.data() + t * half;  // (HS/2)
      for (int64_t h = 0; h < g.heads; ++h) {
        const Real* xr = px + bt * g.stride + h * HS;  // (HS) one head of one position
        Real* orow = po + bt * g.stride + h * HS;      // (HS)
        for (int64_t i = 0; i < half; ++i) {
          const double lo = xr[i], hi = xr[i + half];
          orow[i] = static_cast<Real>(lo * c[i] - hi * s[i]);
          orow[i + half] = static_cast<Real>(hi * c[i] + lo * s[i]);
        }
      }
    }, 1 + (1 << 14) / (g.heads * HS + 1));
  });
}

// x (B, T, NH, HS): NH heads a position.
RopeRows heads_of(const Tensor& x) {
  const int64_t NH = x.size(2), HS = x.size(3);
  return {x.size(0) * x.size(1), x.size(1), NH, HS, NH * HS};
}

// qkv (B, T, 3C): q's NH heads and k's NH heads, side by side at the start of each row; then v
// (copied to out unchanged, unless out is qkv: rotate reads each pair before writing it).
void rotate_qk_copy_v(const Tensor& qkv, int64_t n_head, double theta, int64_t position_offset,
                      double sign, Tensor& out, const char* op) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  rotate(qkv, {B * T, T, 2 * n_head, C / n_head, 3 * C}, theta, position_offset, sign, out, op);
  if (out.raw_data() != qkv.raw_data())
    out.narrow_view(2, 2 * C, C).copy_from(qkv.narrow_view(2, 2 * C, C));  // v (B, T, C) views
}

}  // namespace

void rope_forward(const Tensor& x, double theta, int64_t position_offset, Tensor& out) {
  rotate(x, heads_of(x), theta, position_offset, +1.0, out, "rope");
}

void rope_backward(const Tensor& grad, double theta, int64_t position_offset, Tensor& out) {
  rotate(grad, heads_of(grad), theta, position_offset, -1.0, out, "rope backward");
}

void rope_qkv_forward(const Tensor& qkv, int64_t n_head, double theta, int64_t position_offset,
                      Tensor& out) {
  rotate_qk_copy_v(qkv, n_head, theta, position_offset, +1.0, out, "rope_qkv");
}

void rope_qkv_backward(const Tensor& grad, int64_t n_head, double theta, int64_t position_offset,
                       Tensor& out) {
  rotate_qk_copy_v(grad, n_head, theta, position_offset, -1.0, out, "rope_qkv backward");
}

}  // namespace sinklab::cpu
