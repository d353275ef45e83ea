// The sink metrics of SINKS.md, computed from one forward pass's ForwardCapture.
// Attention mass on key 0 comes from the saved log-sum-exp (ops::attention_key_mass): no T x T
// matrix. Under sigmoid attention, whose rows are not normalised, A[t, 0] is key 0's share of the
// row, sigmoid(s_t0) / sum_k sigmoid(s_tk), the row sums from attention over all-ones values
// (attention_row_means), or those the training forward summed (run.sigmoid_row_sums,
// LayerCapture::row_sums): no T x T matrix either. Reductions run in double in a fixed order, on
// detached tensors: computing them never changes the training result.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "ops/attention.h"
#include "train/model.h"

namespace sinklab::train {

struct LayerMetrics {
  std::vector<double> sink_mass;       // (NH) mean over b and queries t >= 1 of A[t, 0]
  std::vector<double> alpha0;          // (NH) mean over b and t >= 0 of A[t, 0] (Gu et al.)
  std::vector<double> var_pos;         // (T) channel variance of o at t, batch-averaged
  std::vector<double> var_pos_normed;  // (T) same after head-wise RMSNorm (empty when off)
  double var_ratio = 0;                // var_pos[0] / mean_{t>=1} var_pos[t]
  double var_ratio_normed = 0;         // post-norm (NaN when off)
  double dim_disparity = 0;            // max_j |x[0,j]| / mean_j |x[0,j]|, batch-averaged
  int64_t dim_argmax = 0;              // channel of the largest batch-averaged |x[0,j]|
  double norm_ratio = 0;               // |x[0]| / mean_{t>=1} |x[t]|, batch-averaged
  int64_t super_neuron = 0;            // n* = argmax_n mean_b |u[b,0,n]|
  double super_value = 0;              // mean_b |u[b,0,n*]|
  double super_ratio = 0;              // super_value / median |u| over all tokens and neurons
  double massive_top[3] = {0, 0, 0};   // top-3 |x_l| over the batch
  double massive_median = 0;           // median |x_l|
  double effective_rank = 0;           // NaN unless computed this step
  // The paper's readings (docs/METRICS.md):
  double sink_score = 0;               // mean over b, heads and all t >= 0 of A[t, 0]
  double dim_disparity_normed = 0;     // dim_disparity of the block's input norm of x_l
  double effective_rank_output = 0;    // mean over sequences, of the layer's output; NaN unless
                                       // computed this step (eval intervals)
};

struct SinkMetrics {
  std::vector<LayerMetrics> layers;  // (L)
  double sink_rate = 0;              // percent of (l, h) with alpha0 > threshold
  // The paper's layer summaries (train/paper_metrics.h: summarise_paper_metrics fills them):
  double sink_onset = -1;            // first layer whose sink_score passes the onset threshold
  double dim_disparity_mean = 0;     // mean over layers of dim_disparity
  double dim_disparity_normed_mean = 0;   // mean over layers of dim_disparity_normed
  double effective_rank_output_mean = 0;  // mean over layers of effective_rank_output
};

// Each query row's mean attention weight, sum_k A[b,h,t,k] / T (masked keys are 0), as (B, NH,
// T) on q's device (f32, or f64 for f64 q): sigmoid attention's row sums over T. q, k (B, T,
// NH, HS) as the capture holds them (bf16 on a GPU, qkv_part views). The sums are attention's
// output over values of all ones (ops::attention, f32 products), so no (T, T) matrix is made.
Tensor attention_row_means(const Tensor& q, const Tensor& k,
                           const ops::AttentionOptions& attention);
// A key's share of each query row, A[t, k] / sum_j A[t, j], from n weights A[t, k] and the rows'
// mean weights over T keys (attention_row_means), both (B, NH, T); 0 for an empty row.
std::vector<double> row_shares(const double* weight, const double* row_mean, size_t n,
                               int64_t T);

// The ranks of a data-parallel job, for the metrics: every rank passes its values and receives
// every rank's, in rank order (the same number on every rank).
class RankExchange {
 public:
  virtual ~RankExchange() = default;
  virtual std::vector<std::vector<double>> all_gather(const std::vector<double>& mine) = 0;
};

// Each layer's attention mask and mode come from its LayerCapture (as the model ran it).
// With `ranks` (a data-parallel job, each rank's capture a slice of the global batch), the
// per-layer device results are exchanged before the host finishes them, so every rank returns
// the metrics of the global batch: per-sequence values (sink mass, alpha0, dimension disparity,
// norm ratio) over all sequences, batch means (var_pos, the super neuron, the dimension argmax)
// over all, the top-3 |x| exact over all; the medians (massive_median, super_ratio's denominator)
// are the mean of the ranks' medians. The effective rank is the calling rank's sequence 0.
// order_statistics false (metrics.order_statistics): the exact order statistics of |x_l| and
// |u| are not computed, the passes that cost most (docs/METRICS.md): massive_median,
// massive_top and super_ratio are NaN, every other metric the same (on a GPU to rounding: the
// residual's row statistics then come from a pass of their own, summed in another order).
SinkMetrics compute_sink_metrics(const ForwardCapture& capture, double sink_threshold,
                                 bool with_effective_rank, RankExchange* ranks = nullptr,
                                 bool order_statistics = true);

// compute_sink_metrics in two halves, so that other work can be queued between them:
// queue_sink_metrics queues every device reduction (on the stream current for the caller) and
// keeps the capture alive; finish_sink_metrics copies the results to the host (waiting for them
// on the caller's stream: on a GPU, join the stream they were queued on first) and exchanges
// them over ranks, unless fetch_sink_metrics did either already, and finishes the metrics on
// the host.
class QueuedSinkMetrics {
 public:
  QueuedSinkMetrics();
  QueuedSinkMetrics(QueuedSinkMetrics&&) noexcept;
  QueuedSinkMetrics& operator=(QueuedSinkMetrics&&) noexcept;
  ~QueuedSinkMetrics();

 private:
  struct State;
  std::unique_ptr<State> state_;
  friend QueuedSinkMetrics queue_sink_metrics(const ForwardCapture& capture,
                                              bool order_statistics);
  friend SinkMetrics finish_sink_metrics(QueuedSinkMetrics queued, double sink_threshold,
                                         bool with_effective_rank, RankExchange* ranks);
  friend void fetch_sink_metrics(QueuedSinkMetrics& queued, RankExchange* ranks);
};
QueuedSinkMetrics queue_sink_metrics(const ForwardCapture& capture, bool order_statistics = true);
SinkMetrics finish_sink_metrics(QueuedSinkMetrics queued, double sink_threshold,
                                bool with_effective_rank, RankExchange* ranks = nullptr);
// Copies the queued results to the host now (finish_sink_metrics does it when this was not
// called), waiting on the caller's stream only: called on the stream they were queued on, the
// host does not wait for what the main stream has queued since (the trainer's update). With
// `ranks`, also exchanges them over the ranks there (a collective: every rank calls it), and
// finish_sink_metrics then exchanges nothing more, whatever ranks it is given.
void fetch_sink_metrics(QueuedSinkMetrics& queued, RankExchange* ranks = nullptr);

// exp(entropy of the normalised singular values) of a (rows, cols) row-major matrix.
double effective_rank(const std::vector<double>& matrix, int64_t rows, int64_t cols);
// The Gram matrix of n vectors (n, inner), row-major: g (n, n) gets g[i * n + j] = the dot
// product of vectors i and j for j >= i (the entries below the diagonal are left as they are).
// Each entry sums over k in order, as one scalar loop would (the same bits), computed in blocks
// of 4 x 4 entries so that each vector is read once per block rather than once per entry.
void gram_upper(const double* vectors, int64_t n, int64_t inner, double* g);

}  // namespace sinklab::train
