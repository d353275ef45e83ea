#include "train/paper_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/random.h"
#include "ops/statistics.h"

namespace sinklab::train {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr uint64_t kRandomValueStream = 43;  // the random tokens of the amplify mean

template <typename Get>
double layer_mean(const SinkMetrics& m, Get get) {
  if (m.layers.empty()) return kNaN;
  double sum = 0;
  for (const LayerMetrics& l : m.layers) sum += get(l);  // NaN propagates
  return sum / static_cast<double>(m.layers.size());
}

double row_norm(const std::vector<double>& w, int64_t row, int64_t cols) {
  double s = 0;
  for (int64_t c = 0; c < cols; ++c) s += w[row * cols + c] * w[row * cols + c];
  return std::sqrt(s);
}

}  // namespace

int64_t sink_onset_layer(const std::vector<double>& layer_scores, double threshold) {
  for (size_t l = 0; l < layer_scores.size(); ++l)
    if (layer_scores[l] > threshold) return static_cast<int64_t>(l);
  return -1;
}

void summarise_paper_metrics(SinkMetrics& m, double onset_threshold) {
  std::vector<double> scores;
  for (const LayerMetrics& l : m.layers) scores.push_back(l.sink_score);
  m.sink_onset = static_cast<double>(sink_onset_layer(scores, onset_threshold));
  m.dim_disparity_mean = layer_mean(m, [](const LayerMetrics& l) { return l.dim_disparity; });
  m.dim_disparity_normed_mean =
      layer_mean(m, [](const LayerMetrics& l) { return l.dim_disparity_normed; });
  m.effective_rank_output_mean =
      layer_mean(m, [](const LayerMetrics& l) { return l.effective_rank_output; });
}

namespace {

// (NH) the mean over b and queries t >= first of mass (B, NH, T); NaN per head when no query is
// left (first >= T) or first < 0.
std::vector<double> mean_over_queries_from(const std::vector<double>& mass, int64_t B,
                                           int64_t NH, int64_t T, int64_t first,
                                           const char* name) {
  SINKLAB_CHECK(static_cast<int64_t>(mass.size()) == B * NH * T, ShapeError,
                name << ": " << mass.size() << " values for (B, NH, T) = (" << B << ", " << NH
                     << ", " << T << ")",
                "pass attention_key_mass(...) of shape (B, NH, T) as row-major doubles");
  std::vector<double> score(NH, kNaN);
  if (first < 0 || first >= T) return score;
  for (int64_t h = 0; h < NH; ++h) {
    double sum = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = first; t < T; ++t) sum += mass[(b * NH + h) * T + t];
    score[h] = sum / static_cast<double>(B * (T - first));
  }
  return score;
}

}  // namespace

std::vector<double> key_score(const std::vector<double>& mass, int64_t B, int64_t NH, int64_t T,
                              int64_t k) {
  return mean_over_queries_from(mass, B, NH, T, k, "key_score");
}

std::vector<double> key_score_after(const std::vector<double>& mass, int64_t B, int64_t NH,
                                    int64_t T, int64_t k) {
  return mean_over_queries_from(mass, B, NH, T, k < 0 ? -1 : k + 1, "key_score_after");
}

std::vector<double> across_sample_variance(const std::vector<double>& x, int64_t B, int64_t T,
                                           int64_t D) {
  SINKLAB_CHECK(static_cast<int64_t>(x.size()) == B * T * D && B >= 2, ShapeError,
                "across_sample_variance: " << x.size() << " values for (B, T, D) = (" << B
                                           << ", " << T << ", " << D << ")",
                "pass (B, T, D) row-major values of at least 2 samples (probe --random-tokens "
                "N with N >= 2)");
  std::vector<double> out(T, 0.0);  // (T)
  for (int64_t t = 0; t < T; ++t) {
    double acc = 0;
    for (int64_t d = 0; d < D; ++d) {
      double mean = 0;
      for (int64_t b = 0; b < B; ++b) mean += x[(b * T + t) * D + d];
      mean /= static_cast<double>(B);
      double sq = 0;
      for (int64_t b = 0; b < B; ++b) sq += std::pow(x[(b * T + t) * D + d] - mean, 2);
      acc += sq / static_cast<double>(B - 1);
    }
    out[t] = acc / static_cast<double>(D);
  }
  return out;
}

std::vector<double> across_sample_variance(const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  return across_sample_variance(x.to_doubles(), B, T, x.numel() / (B * T));
}

double kurtosis(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  const double n = static_cast<double>(v.size());
  double mean = 0;
  for (double x : v) mean += x / n;
  double m2 = 0, m4 = 0;
  for (double x : v) {
    const double d2 = (x - mean) * (x - mean);
    m2 += d2 / n;
    m4 += d2 * d2 / n;
  }
  return m2 > 0 ? m4 / (m2 * m2) : kNaN;
}

SuperNeuron find_super_neuron(const std::vector<double>& gate, const std::vector<double>& up,
                              const std::vector<double>& down, int64_t F, int64_t C,
                              const std::function<std::vector<double>(int64_t)>& neuron_column,
                              int64_t B, int64_t T, const std::vector<double>& out_first) {
  SINKLAB_CHECK(static_cast<int64_t>(gate.size()) == F * C &&
                    (up.empty() || static_cast<int64_t>(up.size()) == F * C) &&
                    static_cast<int64_t>(down.size()) == C * F &&
                    static_cast<int64_t>(out_first.size()) == B * C,
                ShapeError,
                "find_super_neuron: sizes gate " << gate.size() << ", up " << up.size()
                                                 << ", down " << down.size() << ", out_first "
                                                 << out_first.size() << " for F " << F << ", C "
                                                 << C << ", B " << B,
                "pass gate/up (F, C), down (C, F) and out_first (B, C)");
  SuperNeuron s;
  for (int64_t n = 0; n < F; ++n) {
    const double norm = row_norm(gate, n, C) * (up.empty() ? 1.0 : row_norm(up, n, C));
    if (s.neuron < 0 || norm > s.weight_norm) {
      s.neuron = n;
      s.weight_norm = norm;
    }
  }
  const int64_t n = s.neuron;
  const std::vector<double> u = neuron_column(n);  // (B, T) u[:, :, n]
  SINKLAB_CHECK(static_cast<int64_t>(u.size()) == B * T, ShapeError,
                "find_super_neuron: neuron " << n << "'s column of u has " << u.size()
                                             << " values for B " << B << ", T " << T,
                "return u[:, :, n] as (B, T)");
  double first = 0, rest = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) (t == 0 ? first : rest) += std::fabs(u[b * T + t]);
  first /= static_cast<double>(B);
  rest = T > 1 ? rest / static_cast<double>(B * (T - 1)) : kNaN;
  s.first_token_ratio = rest > 0 ? first / rest : kNaN;
  std::vector<double> column(C);  // W_down[:, n]
  for (int64_t c = 0; c < C; ++c) column[c] = down[c * F + n];
  s.down_kurtosis = kurtosis(column);
  int64_t best = 0;
  for (int64_t c = 1; c < C; ++c)
    if (std::fabs(column[c]) > std::fabs(column[best])) best = c;
  s.down_channel = best;
  std::vector<double> channel(C, 0.0);  // mean_b |y[b, 0, c]|
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) channel[c] += std::fabs(out_first[b * C + c]);
  s.disparity_channel = std::max_element(channel.begin(), channel.end()) - channel.begin();
  return s;
}

std::vector<SuperNeuron> super_neurons(const GPT& model, const ForwardCapture& capture) {
  autograd::NoGradGuard no_grad;
  const bool llama = model.config().arch == Arch::Llama;
  std::vector<SuperNeuron> out;
  const int64_t L = static_cast<int64_t>(capture.layers.size());
  for (int64_t l = 0; l < L; ++l) {
    const std::string pre =
        (llama ? "model.layers." : "transformer.h.") + std::to_string(l) + ".mlp.";
    const Tensor& u_t = capture.layers[l].ffn_hidden;  // (B, T, F)
    const Tensor& y = l + 1 < L ? capture.layers[l + 1].residual : capture.final_residual;
    const int64_t B = u_t.size(0), T = u_t.size(1), F = u_t.size(2), C = y.size(2);
    const std::vector<double> gate =
        model.params()[pre + (llama ? "gate_proj.weight" : "c_fc.weight")].to_doubles();
    const std::vector<double> up =
        llama ? model.params()[pre + "up_proj.weight"].to_doubles() : std::vector<double>();
    const std::vector<double> down =
        model.params()[pre + (llama ? "down_proj.weight" : "c_proj.weight")].to_doubles();
    const auto neuron_column = [&](int64_t n) {  // (B, T) u[:, :, n], not the whole of u
      return u_t.narrow_view(2, n, 1).copy_contiguous().to_doubles();
    };
    out.push_back(find_super_neuron(gate, up, down, F, C, neuron_column, B, T,
                                    y.select_view(1, 0).copy_contiguous().to_doubles()));
  }
  return out;
}

void OutputRanks::add(const ForwardCapture& capture) {
  const int64_t L = static_cast<int64_t>(capture.layers.size());
  if (L == 0) return;
  sum.resize(L, 0.0);
  const int64_t B = capture.final_residual.size(0);
  const int64_t T = capture.final_residual.size(1), C = capture.final_residual.size(2);
  const int64_t count = std::min(B, limit - sequences);  // sequences still wanted
  if (count <= 0) return;
  // Each a Gram matrix and an eigen-solve of up to C x C (a 124M model's final evaluation: 240
  // of 768 x 768, 90 s when they ran one by one). Every (layer, sequence) is a task of its own,
  // so that all cores work: with the sequences of one layer at a time, a batch of 8 kept 8 of
  // the GPU machine's 16 busy. Layers are taken in groups whose outputs are on the host together
  // (count x T x C doubles a layer: 48 MiB for 8 sequences of 1,024 x 768), enough of them to
  // give every thread two tasks.
  const int64_t group = std::max<int64_t>(1, (2 * cpu_threads() + count - 1) / count);
  for (int64_t l0 = 0; l0 < L; l0 += group) {
    const int64_t layers = std::min(group, L - l0);
    std::vector<std::vector<double>> outputs(static_cast<size_t>(layers));  // (layers)(count, T, C)
    for (int64_t i = 0; i < layers; ++i) {
      const int64_t l = l0 + i;
      const Tensor& y = l + 1 < L ? capture.layers[l + 1].residual : capture.final_residual;
      outputs[i] = y.narrow_view(0, 0, count).to_doubles();
    }
    std::vector<double> ranks(static_cast<size_t>(layers * count));  // (layers, count)
    parallel_for(layers * count, [&](int64_t task) {
      const std::vector<double>& o = outputs[task / count];
      const int64_t b = task % count;
      const std::vector<double> sequence(o.begin() + b * T * C,
                                         o.begin() + (b + 1) * T * C);  // (T, C)
      ranks[task] = effective_rank(sequence, T, C);
    });
    for (int64_t i = 0; i < layers; ++i)
      for (int64_t b = 0; b < count; ++b) sum[l0 + i] += ranks[i * count + b];  // in order
  }
  sequences += count;
}

void OutputRanks::store(SinkMetrics& metrics) const {
  for (size_t l = 0; l < metrics.layers.size(); ++l)
    metrics.layers[l].effective_rank_output =
        sequences > 0 && l < sum.size() ? sum[l] / static_cast<double>(sequences) : kNaN;
}

std::vector<std::vector<double>> random_token_value_means(const GPT& model, int64_t tokens,
                                                          int64_t T, int64_t batch,
                                                          uint64_t seed, Device device,
                                                          AmplifySite site) {
  SINKLAB_CHECK(tokens >= T && T >= 1 && batch >= 1, ValueError,
                "random_token_value_means: " << tokens << " tokens in windows of " << T
                                             << ", batches of " << batch,
                "ask for at least one window of tokens (the paper: about 50,000)");
  const int64_t windows = tokens / T;
  std::vector<std::vector<double>> sum;  // (L, NH * HS) sums over tokens
  for (int64_t first = 0; first < windows; first += batch) {
    const int64_t B = std::min(batch, windows - first);
    // Window w holds draws w T .. (w + 1) T - 1 of the stream: every token drawn once, whatever
    // the batch (the windows had started `first` draws apart, each batch the last one shifted).
    const RngKey key{seed, kRandomValueStream, static_cast<uint64_t>(first * T)};
    const Tensor ids =
        rand_ints({B, T}, key, static_cast<int32_t>(model.config().vocab_size));  // (B, T)
    const std::vector<std::vector<double>> means =
        value_means(model, ids.to_device(device), site);
    sum.resize(means.size());
    for (size_t l = 0; l < means.size(); ++l) {
      sum[l].resize(means[l].size(), 0.0);
      for (size_t c = 0; c < means[l].size(); ++c)
        sum[l][c] += means[l][c] * static_cast<double>(B * T);
    }
  }
  for (auto& layer : sum)
    for (double& x : layer) x /= static_cast<double>(windows * T);
  return sum;
}

std::vector<std::vector<double>> value_means(const GPT& model, const Tensor& ids,
                                             AmplifySite site) {
  autograd::NoGradGuard no_grad;
  ForwardCapture cap;
  model.forward(ids, Tensor(), &cap);
  std::vector<std::vector<double>> out;
  const bool after = site == AmplifySite::AfterNorm;
  for (const LayerCapture& layer : cap.layers) {
    SINKLAB_CHECK(!after || layer.attn_out_normed.defined(), ConfigError,
                  "the mean after the norm (amplify_site after_norm) of a model without "
                  "head-wise RMSNorm",
                  "use amplify_site before_norm, or a model with attn_output_norm: "
                  "headwise_rmsnorm");
    const Tensor& v = after ? layer.attn_out_normed : layer.v;  // (B, T, NH, HS)
    const int64_t N = v.size(0) * v.size(1), C = v.size(2) * v.size(3);
    // Per-channel means over the N tokens on v's device: statistics of the columns, (C, 5).
    const Tensor rows = v.copy_contiguous().reshape_view({N, C});
    const std::vector<double> stats =
        ops::row_statistics(rows.transpose_view(0, 1)).to_doubles();  // (C, 5)
    std::vector<double> mean(C);
    for (int64_t c = 0; c < C; ++c) mean[c] = stats[c * ops::kRowStats + ops::kRowMean];
    out.push_back(std::move(mean));
  }
  return out;
}

double standard_error(const std::vector<double>& v) {
  const size_t n = v.size();
  if (n < 2) return kNaN;
  double mean = 0;
  for (double x : v) mean += x / static_cast<double>(n);
  double sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
}

double paired_standard_error(const std::vector<double>& a, const std::vector<double>& b) {
  SINKLAB_CHECK(a.size() == b.size(), ValueError,
                "paired_standard_error: " << a.size() << " and " << b.size() << " values",
                "pair the losses of the same validation batches");
  std::vector<double> differences(a.size());  // (n)
  for (size_t i = 0; i < a.size(); ++i) differences[i] = a[i] - b[i];
  return standard_error(differences);
}

std::string val_se_advice(double se, int64_t batches, int64_t distinct_batches, double target) {
  if (!(se > target) || batches < 1) return "";
  const double ratio = se / target;
  const auto needed = static_cast<int64_t>(std::ceil(static_cast<double>(batches) * ratio * ratio));
  char head[160];
  std::snprintf(head, sizeof head, "val loss s.e. %.4f is above %.3f (docs/METRICS.md): ", se,
                target);
  if (needed <= distinct_batches)
    return std::string(head) + "about " + std::to_string(needed) +
           " validation batches would bring it under (train.eval_batches, now " +
           std::to_string(batches) + ")";
  return std::string(head) + "that takes about " + std::to_string(needed) +
         " batches, more than the " + std::to_string(distinct_batches) +
         " the validation split holds without overlap: hold out more text (prepare.val_fraction)";
}

}  // namespace sinklab::train
