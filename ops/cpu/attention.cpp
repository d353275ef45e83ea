#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/cpu/cpu_clones.h"
#include "ops/cpu/fast_exp.h"
#include "ops/cpu/gemm.h"

namespace sinklab::cpu {

namespace {

// Sizes of a (B, T, NH, HS) attention problem and the offsets into its buffers.
struct Dims {
  int64_t B, T, NH, HS;

  explicit Dims(const Tensor& q) : B(q.size(0)), T(q.size(1)), NH(q.size(2)), HS(q.size(3)) {}
  // First of the HS values of batch b, position t, head h in a (B, T, NH, HS) buffer.
  int64_t row(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * NH + h) * HS; }
  // Element (b, h, t) of a (B, NH, T) buffer.
  int64_t bht(int64_t b, int64_t h, int64_t t) const { return (b * NH + h) * T + t; }
};

template <class Real>
double dot(const Real* a, const Real* b, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return acc;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// scores[j] = q_t . k_j * scale for the visible keys j = first .. t of one (b, h) pair.
template <class Real>
void score_row(const Real* q, const Real* k, const Dims& d, int64_t b, int64_t h, int64_t t,
               int64_t first, double scale, double* scores) {
  const Real* qt = q + d.row(b, t, h);
  for (int64_t j = first; j <= t; ++j) scores[j] = dot(qt, k + d.row(b, j, h), d.HS) * scale;
}

// Natural log of sum_j exp(scores[j]) over j = first .. t, max-subtracted.
double log_sum_exp(const double* scores, int64_t first, int64_t t) {
  double m = -INFINITY;
  for (int64_t j = first; j <= t; ++j) m = std::max(m, scores[j]);
  double sum = 0;
  for (int64_t j = first; j <= t; ++j) sum += std::exp(scores[j] - m);
  return m + std::log(sum);
}

// Attention weight of one visible key from its score: exp(score - lse) or sigmoid(score).
double weight(double score, double lse, bool use_sigmoid) {
  return use_sigmoid ? sigmoid(score) : std::exp(score - lse);
}

}  // namespace

namespace {

// Queries per tile: a tile's scores against every key it may see are one (rows, t1) product.
constexpr int64_t kQueryTile = 64;

// One head's rows of a (B, T, NH, HS) buffer, copied to a contiguous (T, HS) one.
template <class Real>
std::vector<Real> gather_head(const Real* src, const Dims& d, int64_t b, int64_t h) {
  std::vector<Real> out(d.T * d.HS);  // (T, HS)
  for (int64_t t = 0; t < d.T; ++t)
    std::copy_n(src + d.row(b, t, h), d.HS, out.data() + t * d.HS);
  return out;
}

// The reverse: factor * src (T, HS) into one head's rows of dst (B, T, NH, HS).
template <class Real>
void scatter_head(const std::vector<Real>& src, const Dims& d, int64_t b, int64_t h,
                  double factor, Real* dst) {
  for (int64_t t = 0; t < d.T; ++t) {
    Real* row = dst + d.row(b, t, h);
    for (int64_t i = 0; i < d.HS; ++i)
      row[i] = static_cast<Real>(factor * static_cast<double>(src[t * d.HS + i]));
  }
}

// s[j] = exp(s[j] * scale - shift) for j < n: the softmax's exps, vectorised (fast_exp in f32).
template <class Real>
__attribute__((always_inline)) inline void exp_row(Real* s, int64_t n, Real scale, Real shift) {
  for (int64_t j = 0; j < n; ++j) s[j] = fast_exp(s[j] * scale - shift);
}
SINKLAB_CPU_CLONES void exp_row_of(float* s, int64_t n, float scale, float shift) {
  exp_row(s, n, scale, shift);
}
void exp_row_of(double* s, int64_t n, double scale, double shift) { exp_row(s, n, scale, shift); }

// A row of raw scores s[j] = q_t . k_j (j < width) becomes query t's attention weights, zero
// outside its visible keys first .. t. Softmax: the weights sum to 1 and the row's lse is
// returned; sigmoid: sigmoid(s[j] * scale), and their sum is returned.
template <class Real>
double weights_row(Real* s, int64_t width, int64_t first, int64_t t, double scale,
                   bool use_sigmoid) {
  const Real sc = static_cast<Real>(scale);
  std::fill(s, s + first, Real(0));
  std::fill(s + t + 1, s + width, Real(0));
  if (use_sigmoid) {
    double sum = 0;
    for (int64_t j = first; j <= t; ++j) {
      s[j] = static_cast<Real>(sigmoid(s[j] * sc));
      sum += s[j];
    }
    return sum;
  }
  Real m = -std::numeric_limits<Real>::infinity();
  for (int64_t j = first; j <= t; ++j) m = std::max(m, s[j] * sc);
  exp_row_of(s + first, t + 1 - first, sc, m);
  double sum = 0;
  for (int64_t j = first; j <= t; ++j) sum += s[j];
  const Real inv = static_cast<Real>(1.0 / sum);
  for (int64_t j = first; j <= t; ++j) s[j] *= inv;
  return static_cast<double>(m) + std::log(sum);
}

// The same weights from the forward's lse (softmax) or recomputed (sigmoid).
template <class Real>
void weights_row_from_lse(Real* s, int64_t width, int64_t first, int64_t t, double scale,
                          bool use_sigmoid, double lse) {
  if (use_sigmoid) {
    weights_row(s, width, first, t, scale, true);
    return;
  }
  const Real sc = static_cast<Real>(scale), shift = static_cast<Real>(lse);
  std::fill(s, s + first, Real(0));
  std::fill(s + t + 1, s + width, Real(0));
  exp_row_of(s + first, t + 1 - first, sc, shift);
}

}  // namespace

// Per (b, h) pair, in tiles of kQueryTile queries t0 .. t1 - 1, each tile as products over the
// keys 0 .. t1 - 1 it may see (cpu::selected_gemm: OpenBLAS or the own kernel):
//   S = Q_tile K^T (rows, t1);  A = weights(S * scale);  O_tile = A V.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                       const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                       ops::AttentionOperands& /*operands*/) {
  dispatch_float(q.dtype(), "attention", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    const int64_t T = d.T, HS = d.HS;
    // (B, NH, T) lse, or sigmoid's row sums where asked for (AttentionOptions::row_sums)
    Real* plse = lse.defined() ? lse.data<Real>() : nullptr;
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      const std::vector<Real> qh = gather_head(q.data<Real>(), d, b, h);  // (T, HS)
      const std::vector<Real> kh = gather_head(k.data<Real>(), d, b, h);  // (T, HS)
      const std::vector<Real> vh = gather_head(v.data<Real>(), d, b, h);  // (T, HS)
      std::vector<Real> oh(T * HS);                                       // (T, HS)
      std::vector<Real> s(kQueryTile * T);  // (rows, t1) scores, then weights
      for (int64_t t0 = 0; t0 < T; t0 += kQueryTile) {
        const int64_t t1 = std::min(T, t0 + kQueryTile), rows = t1 - t0;
        selected_gemm<Real>(rows, t1, HS, qh.data() + t0 * HS, false, kh.data(), true, s.data(),
                            false);
        for (int64_t t = t0; t < t1; ++t) {
          const double row = weights_row(s.data() + (t - t0) * t1, t1, params.first_key[t], t,
                                         params.scale, params.sigmoid);  // lse or row sum
          if (plse) plse[d.bht(b, h, t)] = static_cast<Real>(row);
        }
        selected_gemm<Real>(rows, HS, t1, s.data(), false, vh.data(), false,
                            oh.data() + t0 * HS, false);
      }
      scatter_head(oh, d, b, h, 1.0, out.data<Real>());
    });
  });
}

// Flash-style, per (b, h) pair and query tile, weights A recomputed from the saved lse:
//   dV += A^T dO_tile;  dA = dO_tile V^T;  dS = A (dA - D) (softmax, D_t = dO_t . O_t) or
//   A (1 - A) dA (sigmoid);  dQ_tile = scale dS K;  dK += scale dS^T Q_tile.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& grad_out,
                        const ops::AttentionParams& params,
                        const ops::AttentionOperands& /*operands*/, Tensor& dq, Tensor& dk,
                        Tensor& dv) {
  dispatch_float(q.dtype(), "attention backward", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    const int64_t T = d.T, HS = d.HS;
    const Real* plse = params.sigmoid ? nullptr : lse.data<Real>();  // (B, NH, T)
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      const std::vector<Real> qh = gather_head(q.data<Real>(), d, b, h);          // (T, HS)
      const std::vector<Real> kh = gather_head(k.data<Real>(), d, b, h);          // (T, HS)
      const std::vector<Real> vh = gather_head(v.data<Real>(), d, b, h);          // (T, HS)
      const std::vector<Real> oh = gather_head(out.data<Real>(), d, b, h);        // (T, HS)
      const std::vector<Real> doh = gather_head(grad_out.data<Real>(), d, b, h);  // (T, HS)
      std::vector<Real> dqh(T * HS), dkh(T * HS, Real(0)), dvh(T * HS, Real(0));  // (T, HS)
      std::vector<Real> a(kQueryTile * T), da(kQueryTile * T);  // (rows, t1)
      for (int64_t t0 = 0; t0 < T; t0 += kQueryTile) {
        const int64_t t1 = std::min(T, t0 + kQueryTile), rows = t1 - t0;
        const Real* q_tile = qh.data() + t0 * HS;    // (rows, HS)
        const Real* do_tile = doh.data() + t0 * HS;  // (rows, HS)
        selected_gemm<Real>(rows, t1, HS, q_tile, false, kh.data(), true, a.data(), false);
        for (int64_t t = t0; t < t1; ++t) {
          const double row_lse = plse ? static_cast<double>(plse[d.bht(b, h, t)]) : 0.0;
          weights_row_from_lse(a.data() + (t - t0) * t1, t1, params.first_key[t], t,
                               params.scale, params.sigmoid, row_lse);
        }
        selected_gemm<Real>(t1, HS, rows, a.data(), true, do_tile, false, dvh.data(), true);
        selected_gemm<Real>(rows, t1, HS, do_tile, false, vh.data(), true, da.data(), false);
        for (int64_t t = t0; t < t1; ++t) {  // da becomes dS (zero where A is)
          Real* a_row = a.data() + (t - t0) * t1;
          Real* ds_row = da.data() + (t - t0) * t1;
          if (params.sigmoid) {
            for (int64_t j = 0; j < t1; ++j) ds_row[j] *= a_row[j] * (Real(1) - a_row[j]);
          } else {
            // D_t = sum_i dO_ti O_ti = sum_j A_tj dA_tj (the A-weighted mean of dA).
            const Real D = static_cast<Real>(dot(doh.data() + t * HS, oh.data() + t * HS, HS));
            for (int64_t j = 0; j < t1; ++j) ds_row[j] = a_row[j] * (ds_row[j] - D);
          }
        }
        selected_gemm<Real>(rows, HS, t1, da.data(), false, kh.data(), false,
                            dqh.data() + t0 * HS, false);
        selected_gemm<Real>(t1, HS, rows, da.data(), true, q_tile, false, dkh.data(), true);
      }
      scatter_head(dqh, d, b, h, params.scale, dq.data<Real>());
      scatter_head(dkh, d, b, h, params.scale, dk.data<Real>());
      scatter_head(dvh, d, b, h, 1.0, dv.data<Real>());
    });
  });
}

void attention_probabilities(const Tensor& q, const Tensor& k, const ops::AttentionParams& params,
                             Tensor& probs) {
  dispatch_float(q.dtype(), "attention_probabilities", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    const Real* pq = q.data<Real>();  // (B, T, NH, HS)
    const Real* pk = k.data<Real>();  // (B, T, NH, HS)
    Real* pa = probs.data<Real>();    // (B, NH, T, T)
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      std::vector<double> scores(d.T);  // (T) one query row
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t first = params.first_key[t];
        score_row(pq, pk, d, b, h, t, first, params.scale, scores.data());
        const double row_lse = params.sigmoid ? 0.0 : log_sum_exp(scores.data(), first, t);
        Real* row = pa + (bh * d.T + t) * d.T;  // (T) keys of query t
        for (int64_t j = 0; j < d.T; ++j)
          row[j] = (j >= first && j <= t)
                       ? static_cast<Real>(weight(scores[j], row_lse, params.sigmoid))
                       : Real(0);
      }
    });
  });
}

void attention_key_mass(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t key,
                        const ops::AttentionParams& params, Tensor& mass) {
  dispatch_float(q.dtype(), "attention_key_mass", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    // Positions rs elements apart: NH * HS, or 3C for ops::qkv_part views.
    const int64_t rs = q.strides()[1];
    auto row = [&](int64_t b, int64_t t, int64_t h) { return (b * d.T + t) * rs + h * d.HS; };
    const Real* pq = q.data<Real>();  // (B, T, NH, HS), rows rs apart
    const Real* pk = k.data<Real>();  // (B, T, NH, HS), rows rs apart
    const Real* plse = params.sigmoid ? nullptr : lse.data<Real>();  // (B, NH, T)
    Real* pm = mass.data<Real>();     // (B, NH, T)
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      const Real* kk = pk + row(b, key, h);
      for (int64_t t = 0; t < d.T; ++t) {
        double a = 0;
        if (t >= key && key >= params.first_key[t]) {
          const double score = dot(pq + row(b, t, h), kk, d.HS) * params.scale;
          const double row_lse = plse ? static_cast<double>(plse[d.bht(b, h, t)]) : 0.0;
          a = weight(score, row_lse, params.sigmoid);
        }
        pm[d.bht(b, h, t)] = static_cast<Real>(a);
      }
    });
  });
}

}  // namespace sinklab::cpu
