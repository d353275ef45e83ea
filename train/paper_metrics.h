// The paper's readings of the sink metrics (docs/METRICS.md), beside today's (sink_metrics.h):
// the sink onset layer, layer means, the score at key k over queries t > k, the across-sample
// variance of the 1/(t+1) law, super neurons found from the weights, the effective rank of each
// layer's output averaged over sequences, and the validation loss's standard error.
// The host functions take row-major doubles so that tests can check them by hand; the capture
// helpers copy what they need from the device (eval and probe time only, never per step).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/model.h"
#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

// First layer whose score is strictly above threshold; -1 when none is.
int64_t sink_onset_layer(const std::vector<double>& layer_scores, double threshold);

// Fills metrics.sink_onset (from layers[l].sink_score) and the layer means of dim_disparity,
// dim_disparity_normed and effective_rank_output (NaN when any layer's value is NaN).
void summarise_paper_metrics(SinkMetrics& metrics, double onset_threshold);

// Today's score at key k: mass (B, NH, T) holds A[b, h, t, k]; returns (NH) the mean over b
// and queries t >= k (query k's attention to itself included). NaN per head when k >= T.
std::vector<double> key_score(const std::vector<double>& mass, int64_t B, int64_t NH, int64_t T,
                              int64_t k);

// The score at key k without the self term: mass (B, NH, T) holds A[b, h, t, k];
// returns (NH) the mean over b and queries t > k. NaN per head when k >= T - 1.
std::vector<double> key_score_after(const std::vector<double>& mass, int64_t B, int64_t NH,
                                    int64_t T, int64_t k);

// The 1/(t+1) law's variance: x (B, T, D); returns (T): for each position t the variance
// across the B samples (unbiased, divisor B - 1) of x[., t, d], averaged over the D dims.
std::vector<double> across_sample_variance(const std::vector<double>& x, int64_t B, int64_t T,
                                           int64_t D);
// The same of a (B, T, ...) tensor on any device (copied to the host: probe time only).
std::vector<double> across_sample_variance(const Tensor& x);

// Pearson kurtosis E[(v - mean)^4] / Var(v)^2 (3 for a Gaussian, about n for a vector with one
// non-zero entry of n); NaN when v is constant.
double kurtosis(const std::vector<double>& v);

// The layer's FFN neuron whose input weights are largest, and what it does.
struct SuperNeuron {
  int64_t neuron = -1;             // n: row of W_gate/W_up (W_fc) with the largest weight norm
  double weight_norm = 0;          // |W_gate[n]| * |W_up[n]| (LLaMA) or |W_fc[n]| (GPT-2)
  double first_token_ratio = 0;    // mean_b |u[b, 0, n]| / mean_{b, t >= 1} |u[b, t, n]|
  double down_kurtosis = 0;        // kurtosis of W_down[:, n] (C values): channel sparsity
  int64_t down_channel = -1;       // argmax_c |W_down[c, n]|: the residual channel n writes
  int64_t disparity_channel = -1;  // argmax_c mean_b |y[b, 0, c]|, y the layer's output
};
// gate, up: (F, C) row-major (up empty for GPT-2: the norm is |gate[n]|); down: (C, F);
// neuron_column(n): (B, T) u[:, :, n] of the FFN intermediate u (B, T, F), asked once, for the
// chosen neuron only (a probe's u is 1.6 GB of doubles a layer at 64 x 1024 x 3072);
// out_first: (B, C) the layer output's first-token rows.
SuperNeuron find_super_neuron(const std::vector<double>& gate, const std::vector<double>& up,
                              const std::vector<double>& down, int64_t F, int64_t C,
                              const std::function<std::vector<double>(int64_t)>& neuron_column,
                              int64_t B, int64_t T, const std::vector<double>& out_first);
// One per layer of model, from its weights and capture (a forward of that model).
std::vector<SuperNeuron> super_neurons(const GPT& model, const ForwardCapture& capture);

// Sums of the effective rank of each layer's output (layers[l + 1].residual; the last layer's
// is final_residual), one sequence at a time, over at most `limit` sequences in all.
struct OutputRanks {
  std::vector<double> sum;  // (L)
  int64_t sequences = 0;
  int64_t limit = 20;
  bool full() const { return sequences >= limit; }
  // Adds the capture's sequences until `limit` are counted.
  void add(const ForwardCapture& capture);
  // Writes the means into metrics.layers[l].effective_rank_output (NaN when none was added).
  void store(SinkMetrics& metrics) const;
};

// Each layer's mean value vector over every token of ids (B, T): (L, NH * HS). At
// AmplifySite::AfterNorm the mean of head-wise RMSNorm's output instead (what an amplification
// after the norm scales; the model must have the head-wise norm).
std::vector<std::vector<double>> value_means(const GPT& model, const Tensor& ids,
                                             AmplifySite site = AmplifySite::BeforeNorm);
// The amplify intervention's mu as the paper computes it: each layer's mean value vector over
// uniform-random tokens, (L, NH * HS), from forwards of at most `batch` sequences of T tokens
// until `tokens` tokens are seen (the paper: about 50,000); at AfterNorm the mean of the
// head-wise norm's output over the same tokens (our choice; the paper acts before the norm).
// Pass it to GPT::set_amplify_mean.
std::vector<std::vector<double>> random_token_value_means(
    const GPT& model, int64_t tokens, int64_t T, int64_t batch, uint64_t seed, Device device,
    AmplifySite site = AmplifySite::BeforeNorm);

// Standard error of the mean of values: sample standard deviation / sqrt(n); NaN for n < 2.
double standard_error(const std::vector<double>& values);
// Standard error of the mean difference a[i] - b[i] of two measurements on the same items (two
// variants' losses on the same validation batches): standard_error of the differences. The
// batches' own difficulty cancels, so it is far below either loss's standard error when the two
// move together. NaN for n < 2; a and b must have one size.
double paired_standard_error(const std::vector<double>& a, const std::vector<double>& b);

// The standard error of the validation loss below which variants are compared (issue 17,
// docs/METRICS.md): differences of a few thousandths are then more than evaluation noise.
inline constexpr double kValLossSeTarget = 0.002;

// What the final evaluation says when the validation loss's standard error `se` of `batches`
// batches is above `target`: about how many batches would bring it under (the error falls as
// 1/sqrt(batches)), or, when that is more than the `distinct_batches` the validation split holds
// without overlap, that more text must be held out. "" when se is below target (or NaN).
std::string val_se_advice(double se, int64_t batches, int64_t distinct_batches,
                          double target = kValLossSeTarget);

}  // namespace sinklab::train
