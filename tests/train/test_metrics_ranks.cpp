// Sink metrics of a data-parallel job: each rank captures a slice of the global batch, and
// compute_sink_metrics exchanges the per-layer results (RankExchange) so that every rank logs the
// metrics of the whole batch. Checked here without a second process: two captures of the two
// halves of a batch, combined, against one capture of the whole batch.
#include <cmath>
#include <tuple>

#include "autograd/grad_mode.h"
#include "core/random.h"
#include "train/model.h"
#include "train/metrics/sink_metrics.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {

// Rank 0 of two: its all_gather returns its own values, then rank 1's (recorded beforehand).
// Rank 1's own call is made first with `other` empty: it records and returns its values alone.
struct TwoRanks : RankExchange {
  std::vector<double> other;
  std::vector<double> recorded;
  std::vector<std::vector<double>> all_gather(const std::vector<double>& mine) override {
    if (other.empty()) {
      recorded = mine;
      return {mine};
    }
    return {mine, other};
  }
};

// The tests' model: 16 wide, T = 9, head-wise RMSNorm.
ModelSection small_model(Arch arch, AttentionKind attention) {
  ModelSection cfg = test::tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
  cfg.attention = attention;
  cfg.n_embd = 16;
  cfg.block_size = 9;
  return cfg;
}

// A global batch of 4 sequences (4, 9) and its two ranks' halves, (2, 9) each.
std::tuple<Tensor, Tensor, Tensor> batch_and_halves() {
  Tensor ids = rand_ints({4, 9}, RngKey{5, 7, 0}, 11);
  return {ids, ids.narrow_view(0, 0, 2).copy_contiguous(),
          ids.narrow_view(0, 2, 2).copy_contiguous()};
}

}  // namespace

TEST_CASE("metrics of two ranks' slices, combined, equal the metrics of the whole batch",
          "[metrics][distributed]") {
  // order: metrics.order_statistics (false: no order-statistics slots travel between ranks).
  for (bool order : {true, false})
  for (AttentionKind attention : {AttentionKind::Softmax, AttentionKind::Sigmoid})
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    // sigmoid: the rows' shares travel as (B, NH, T) rows
    GPT model(small_model(arch, attention), 5, DType::F64);
    autograd::NoGradGuard no_grad;
    const auto [ids, first_half, second_half] = batch_and_halves();
    const SinkMetrics whole =
        compute_sink_metrics(test::capture_of(model, ids), 0.3, false, nullptr, order);

    TwoRanks exchange;
    const SinkMetrics rank1 =
        compute_sink_metrics(test::capture_of(model, second_half), 0.3, false, &exchange, order);
    exchange.other = exchange.recorded;
    const SinkMetrics rank0 =
        compute_sink_metrics(test::capture_of(model, first_half), 0.3, false, nullptr, order);
    const SinkMetrics combined =
        compute_sink_metrics(test::capture_of(model, first_half), 0.3, false, &exchange, order);

    INFO(choice_text(arch) << ", " << choice_text(attention)
                           << (order ? "" : ", no order statistics"));
    REQUIRE(combined.sink_rate == Approx(whole.sink_rate));
    for (size_t l = 0; l < whole.layers.size(); ++l) {
      const LayerMetrics& w = whole.layers[l];
      const LayerMetrics& c = combined.layers[l];
      for (size_t h = 0; h < w.sink_mass.size(); ++h) {
        REQUIRE(c.sink_mass[h] == Approx(w.sink_mass[h]).epsilon(1e-12));
        REQUIRE(c.alpha0[h] == Approx(w.alpha0[h]).epsilon(1e-12));
      }
      for (size_t t = 0; t < w.var_pos.size(); ++t) {
        REQUIRE(c.var_pos[t] == Approx(w.var_pos[t]).epsilon(1e-12));
        REQUIRE(c.var_pos_normed[t] == Approx(w.var_pos_normed[t]).epsilon(1e-12));
      }
      REQUIRE(c.var_ratio == Approx(w.var_ratio).epsilon(1e-12));
      REQUIRE(c.dim_disparity == Approx(w.dim_disparity).epsilon(1e-12));
      REQUIRE(c.dim_disparity_normed == Approx(w.dim_disparity_normed).epsilon(1e-12));
      REQUIRE(c.sink_score == Approx(w.sink_score).epsilon(1e-12));
      REQUIRE(c.norm_ratio == Approx(w.norm_ratio).epsilon(1e-12));
      REQUIRE(c.dim_argmax == w.dim_argmax);
      REQUIRE(c.super_neuron == w.super_neuron);
      REQUIRE(c.super_value == Approx(w.super_value).epsilon(1e-12));
      if (order) {
        for (int i = 0; i < 3; ++i) REQUIRE(c.massive_top[i] == w.massive_top[i]);
        // The median is the mean of the slices' medians, not the median of the whole batch.
        const double mean_of_medians =
            0.5 * (rank0.layers[l].massive_median + rank1.layers[l].massive_median);
        REQUIRE(c.massive_median == Approx(mean_of_medians).epsilon(1e-12));
        // super_ratio's median of |u| likewise: each slice's is its super_value / super_ratio.
        const double u_median = 0.5 * (rank0.layers[l].super_value / rank0.layers[l].super_ratio +
                                       rank1.layers[l].super_value / rank1.layers[l].super_ratio);
        REQUIRE(c.super_ratio == Approx(c.super_value / u_median).epsilon(1e-9));
        REQUIRE(c.super_ratio != Approx(w.super_ratio).epsilon(1e-9));  // not the whole's
      } else {
        for (int i = 0; i < 3; ++i) REQUIRE(std::isnan(c.massive_top[i]));
        REQUIRE((std::isnan(c.massive_median) && std::isnan(c.super_ratio)));
      }
      // Rank 1 alone (its exchange returned only its own values) saw its slice only.
      REQUIRE(rank1.layers[l].sink_mass[0] != Approx(w.sink_mass[0]).epsilon(1e-9));
    }
  }
}

TEST_CASE("metrics exchanged over the ranks as they are fetched equal those exchanged when "
          "finished", "[metrics][distributed]") {
  // run.metrics_exchange_on_side: the trainer fetches and exchanges on the side stream, then
  // finishes with the ranks again (which must exchange nothing more).
  GPT model(small_model(Arch::Llama, AttentionKind::Softmax), 5, DType::F64);
  autograd::NoGradGuard no_grad;
  const auto [ids, first_half, second_half] = batch_and_halves();
  TwoRanks exchange;
  compute_sink_metrics(test::capture_of(model, second_half), 0.3, false, &exchange);
  exchange.other = exchange.recorded;
  const SinkMetrics when_finished =
      compute_sink_metrics(test::capture_of(model, first_half), 0.3, false, &exchange);

  struct Counting : RankExchange {  // the exchange above, counting its calls
    RankExchange* inner;
    int calls = 0;
    std::vector<std::vector<double>> all_gather(const std::vector<double>& mine) override {
      ++calls;
      return inner->all_gather(mine);
    }
  } counting;
  counting.inner = &exchange;
  for (const bool ranks_again : {true, false}) {
    INFO("finished with the ranks again: " << ranks_again);
    QueuedSinkMetrics queued = queue_sink_metrics(test::capture_of(model, first_half));
    fetch_sink_metrics(queued, &counting);
    REQUIRE(counting.calls == 1);  // exchanged as fetched
    const SinkMetrics when_fetched = finish_sink_metrics(std::move(queued), 0.3, false,
                                                         ranks_again ? &counting : nullptr);
    REQUIRE(counting.calls == 1);  // and not again
    counting.calls = 0;
    test::require_same_metrics(when_finished, when_fetched);  // over both ranks' sequences
  }
}
