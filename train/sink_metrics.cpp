#include "train/sink_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "core/parallel.h"

namespace sinklab::train {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Channel variance of o (B, T, NH, HS) at every position, batch-averaged: (T).
std::vector<double> variance_by_position(const Tensor& o) {
  const int64_t B = o.size(0), T = o.size(1), C = o.numel() / (B * T);
  std::vector<double> values = o.to_doubles();
  std::vector<double> var(T, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double acc = 0;
    for (int64_t b = 0; b < B; ++b) {
      const double* row = values.data() + (b * T + t) * C;
      double mean = 0, sq = 0;
      for (int64_t c = 0; c < C; ++c) mean += row[c];
      mean /= C;
      for (int64_t c = 0; c < C; ++c) sq += (row[c] - mean) * (row[c] - mean);
      acc += sq / C;
    }
    var[t] = acc / B;
  }
  return var;
}

double first_to_rest_ratio(const std::vector<double>& per_position) {
  if (per_position.size() < 2) return kNaN;
  double rest = 0;
  for (size_t t = 1; t < per_position.size(); ++t) rest += per_position[t];
  rest /= static_cast<double>(per_position.size() - 1);
  return per_position[0] / rest;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return kNaN;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), v.begin() + mid));
  return m;
}

void attention_metrics(const LayerCapture& cap, const ops::AttentionOptions& attention,
                       LayerMetrics& out) {
  Tensor mass = ops::attention_key_mass(cap.q, cap.k, cap.lse, 0, attention);  // (B, NH, T)
  const int64_t B = mass.size(0), NH = mass.size(1), T = mass.size(2);
  std::vector<double> a = mass.to_doubles();
  out.sink_mass.assign(NH, 0.0);
  out.alpha0.assign(NH, 0.0);
  for (int64_t h = 0; h < NH; ++h) {
    double all = 0, rest = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const double v = a[(b * NH + h) * T + t];
        all += v;
        if (t >= 1) rest += v;
      }
    out.alpha0[h] = all / static_cast<double>(B * T);
    out.sink_mass[h] = T > 1 ? rest / static_cast<double>(B * (T - 1)) : kNaN;
  }
}

void residual_metrics(const Tensor& residual, LayerMetrics& out) {
  const int64_t B = residual.size(0), T = residual.size(1), C = residual.size(2);
  std::vector<double> x = residual.to_doubles();
  std::vector<double> mean_abs0(C, 0.0);
  double disparity = 0, norm_ratio = 0;
  for (int64_t b = 0; b < B; ++b) {
    const double* first = x.data() + b * T * C;
    double mx = 0, sum_abs = 0, norm0 = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double v = std::fabs(first[c]);
      mx = std::max(mx, v);
      sum_abs += v;
      norm0 += v * v;
      mean_abs0[c] += v / B;
    }
    disparity += mx / (sum_abs / C);
    double rest = 0;
    for (int64_t t = 1; t < T; ++t) {
      double n = 0;
      for (int64_t c = 0; c < C; ++c) n += x[(b * T + t) * C + c] * x[(b * T + t) * C + c];
      rest += std::sqrt(n);
    }
    norm_ratio += T > 1 ? std::sqrt(norm0) / (rest / (T - 1)) : kNaN;
  }
  out.dim_disparity = disparity / B;
  out.norm_ratio = norm_ratio / B;
  out.dim_argmax = std::max_element(mean_abs0.begin(), mean_abs0.end()) - mean_abs0.begin();
  std::vector<double> abs_x(x.size());
  for (size_t i = 0; i < x.size(); ++i) abs_x[i] = std::fabs(x[i]);
  std::vector<double> top(abs_x);
  const size_t k = std::min<size_t>(3, top.size());
  std::partial_sort(top.begin(), top.begin() + k, top.end(), std::greater<double>());
  for (size_t i = 0; i < 3; ++i) out.massive_top[i] = i < k ? top[i] : kNaN;
  out.massive_median = median_of(std::move(abs_x));
}

void ffn_metrics(const Tensor& u, LayerMetrics& out) {
  const int64_t B = u.size(0), T = u.size(1), F = u.size(2);
  std::vector<double> values = u.to_doubles();
  std::vector<double> first(F, 0.0);  // mean_b |u[b, 0, n]|
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < F; ++n) first[n] += std::fabs(values[b * T * F + n]) / B;
  out.super_neuron = std::max_element(first.begin(), first.end()) - first.begin();
  out.super_value = first[out.super_neuron];
  for (double& v : values) v = std::fabs(v);
  const double median = median_of(std::move(values));
  out.super_ratio = median > 0 ? out.super_value / median : kNaN;
}

}  // namespace

SinkMetrics compute_sink_metrics(const ForwardCapture& capture,
                                 const ops::AttentionOptions& attention, double sink_threshold,
                                 bool with_effective_rank) {
  autograd::NoGradGuard no_grad;
  SinkMetrics metrics;
  metrics.layers.resize(capture.layers.size());
  int64_t sinks = 0, heads = 0;
  for (size_t l = 0; l < capture.layers.size(); ++l) {
    const LayerCapture& cap = capture.layers[l];
    LayerMetrics& m = metrics.layers[l];
    attention_metrics(cap, attention, m);
    m.var_pos = variance_by_position(cap.attn_out);
    m.var_ratio = first_to_rest_ratio(m.var_pos);
    if (cap.attn_out_normed.defined()) {
      m.var_pos_normed = variance_by_position(cap.attn_out_normed);
      m.var_ratio_normed = first_to_rest_ratio(m.var_pos_normed);
    } else {
      m.var_ratio_normed = kNaN;
    }
    residual_metrics(cap.residual, m);
    ffn_metrics(cap.ffn_hidden, m);
    m.effective_rank = kNaN;
    if (with_effective_rank) {
      const int64_t T = cap.residual.size(1), C = cap.residual.size(2);
      std::vector<double> x = cap.residual.to_doubles();
      x.resize(T * C);  // first sequence of the batch
      m.effective_rank = effective_rank(x, T, C);
    }
    for (double a : m.alpha0) {
      sinks += a > sink_threshold;
      ++heads;
    }
  }
  metrics.sink_rate = heads ? 100.0 * sinks / heads : 0.0;
  return metrics;
}

double effective_rank(const std::vector<double>& matrix, int64_t rows, int64_t cols) {
  // Eigenvalues of the smaller Gram matrix (cyclic Jacobi), singular values = sqrt.
  const bool by_rows = rows <= cols;
  const int64_t n = by_rows ? rows : cols, inner = by_rows ? cols : rows;
  std::vector<double> g(n * n, 0.0);  // (n, n)
  parallel_for(n, [&](int64_t i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < inner; ++k)
        acc += by_rows ? matrix[i * cols + k] * matrix[j * cols + k]
                       : matrix[k * cols + i] * matrix[k * cols + j];
      g[i * n + j] = acc;
    }
  });
  for (int sweep = 0; sweep < 50; ++sweep) {
    double off = 0, diag = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) (i == j ? diag : off) += g[i * n + j] * g[i * n + j];
    if (off <= 1e-22 * diag) break;
    for (int64_t p = 0; p < n - 1; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = g[p * n + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (g[q * n + q] - g[p * n + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double gkp = g[k * n + p], gkq = g[k * n + q];
          g[k * n + p] = c * gkp - s * gkq;
          g[k * n + q] = s * gkp + c * gkq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double gpk = g[p * n + k], gqk = g[q * n + k];
          g[p * n + k] = c * gpk - s * gqk;
          g[q * n + k] = s * gpk + c * gqk;
        }
      }
  }
  std::vector<double> sv(n);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += sv[i] = std::sqrt(std::max(0.0, g[i * n + i]));
  if (total <= 0) return 0.0;
  double entropy = 0;
  for (double s : sv)
    if (s > 0) entropy -= (s / total) * std::log(s / total);
  return std::exp(entropy);
}

}  // namespace sinklab::train
