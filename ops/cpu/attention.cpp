#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"

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

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                       const ops::AttentionParams& params, Tensor& out, Tensor& lse,
                       ops::AttentionOperands& /*operands*/) {
  dispatch_float(q.dtype(), "attention", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    const Real* pq = q.data<Real>();  // (B, T, NH, HS)
    const Real* pk = k.data<Real>();  // (B, T, NH, HS)
    const Real* pv = v.data<Real>();  // (B, T, NH, HS)
    Real* po = out.data<Real>();      // (B, T, NH, HS)
    Real* plse = params.sigmoid ? nullptr : lse.data<Real>();  // (B, NH, T)
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      std::vector<double> scores(d.T);  // (T) one query row; only first..t is used
      std::vector<double> acc(d.HS);    // (HS) output row being summed
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t first = params.first_key[t];
        score_row(pq, pk, d, b, h, t, first, params.scale, scores.data());
        const double row_lse = params.sigmoid ? 0.0 : log_sum_exp(scores.data(), first, t);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = first; j <= t; ++j) {
          const double a = weight(scores[j], row_lse, params.sigmoid);
          const Real* vj = pv + d.row(b, j, h);
          for (int64_t i = 0; i < d.HS; ++i) acc[i] += a * static_cast<double>(vj[i]);
        }
        Real* ot = po + d.row(b, t, h);
        for (int64_t i = 0; i < d.HS; ++i) ot[i] = static_cast<Real>(acc[i]);
        if (plse) plse[d.bht(b, h, t)] = static_cast<Real>(row_lse);
      }
    });
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& grad_out,
                        const ops::AttentionParams& params,
                        const ops::AttentionOperands& /*operands*/, Tensor& dq, Tensor& dk,
                        Tensor& dv) {
  dispatch_float(q.dtype(), "attention backward", [&](auto zero) {
    using Real = decltype(zero);
    const Dims d(q);
    const Real* pq = q.data<Real>();          // (B, T, NH, HS)
    const Real* pk = k.data<Real>();          // (B, T, NH, HS)
    const Real* pv = v.data<Real>();          // (B, T, NH, HS)
    const Real* po = out.data<Real>();        // (B, T, NH, HS)
    const Real* pdo = grad_out.data<Real>();  // (B, T, NH, HS)
    const Real* plse = params.sigmoid ? nullptr : lse.data<Real>();  // (B, NH, T)
    Real* pdq = dq.data<Real>();  // (B, T, NH, HS)
    Real* pdk = dk.data<Real>();  // (B, T, NH, HS)
    Real* pdv = dv.data<Real>();  // (B, T, NH, HS)
    parallel_for(d.B * d.NH, [&](int64_t bh) {
      const int64_t b = bh / d.NH, h = bh % d.NH;
      // dk and dv of key j collect contributions from every query t >= j: keep them in double
      // for the whole (b, h) pair and write them once at the end.
      std::vector<double> dk_acc(d.T * d.HS, 0.0);  // (T, HS)
      std::vector<double> dv_acc(d.T * d.HS, 0.0);  // (T, HS)
      std::vector<double> dq_acc(d.HS);             // (HS) one query row
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t first = params.first_key[t];
        const Real* qt = pq + d.row(b, t, h);
        const Real* dout = pdo + d.row(b, t, h);
        const double row_lse = plse ? static_cast<double>(plse[d.bht(b, h, t)]) : 0.0;
        // Softmax: D_t = sum_i dO_ti O_ti = sum_j P_tj dP_tj (the P-weighted mean of dP).
        const double D = params.sigmoid ? 0.0 : dot(dout, po + d.row(b, t, h), d.HS);
        std::fill(dq_acc.begin(), dq_acc.end(), 0.0);
        for (int64_t j = first; j <= t; ++j) {
          const Real* kj = pk + d.row(b, j, h);
          const Real* vj = pv + d.row(b, j, h);
          const double score = dot(qt, kj, d.HS) * params.scale;
          const double a = weight(score, row_lse, params.sigmoid);  // A_tj
          const double da = dot(dout, vj, d.HS);                    // dA_tj = dO_t . v_j
          // dscore_tj: softmax P (dP - D); sigmoid A (1 - A) dA.
          const double ds = params.sigmoid ? a * (1.0 - a) * da : a * (da - D);
          for (int64_t i = 0; i < d.HS; ++i) {
            dq_acc[i] += ds * static_cast<double>(kj[i]);
            dk_acc[j * d.HS + i] += ds * static_cast<double>(qt[i]);
            dv_acc[j * d.HS + i] += a * static_cast<double>(dout[i]);
          }
        }
        Real* dqt = pdq + d.row(b, t, h);
        for (int64_t i = 0; i < d.HS; ++i) dqt[i] = static_cast<Real>(dq_acc[i] * params.scale);
      }
      for (int64_t j = 0; j < d.T; ++j) {
        Real* dkj = pdk + d.row(b, j, h);
        Real* dvj = pdv + d.row(b, j, h);
        for (int64_t i = 0; i < d.HS; ++i) {
          dkj[i] = static_cast<Real>(dk_acc[j * d.HS + i] * params.scale);
          dvj[i] = static_cast<Real>(dv_acc[j * d.HS + i]);
        }
      }
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
