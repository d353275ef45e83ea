// The paper's readings of the sink metrics (docs/METRICS.md), each against a hand-computed
// example, and the capture-level ones against a direct computation from the capture.
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <limits>
#include <vector>

#include "core/random.h"
#include "ops/attention.h"
#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"
#include "train/console.h"
#include "train/model.h"
#include "train/paper_metrics.h"
#include "train/commands/probe.h"
#include "train/metrics/sink_metrics.h"
#include "train/trainer.h"

using namespace sinklab;
using namespace sinklab::train;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// train.bin and val.bin of letter-like tokens (the first 3000 again for validation) in dir.
void write_letter_data(const test::TempDir& dir) {
  const std::vector<int32_t> tokens = test::letter_tokens(4, 1, 20000, 20, 2);
  test::write_train_val(dir.path, tokens, {tokens.begin(), tokens.begin() + 3000});
}
// A 2 x 32 LLaMA (T = 16, byte tokens) on dir's letter data: the run's name, then the train
// and metrics sections as YAML flow maps.
std::string tiny_letter_run(const test::TempDir& dir, const std::string& name,
                            const std::string& train, const std::string& metrics) {
  std::ostringstream y;
  y << "run: {name: " << name << ", out_dir: " << dir.path.string() << "}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
    << "data: {dir: " << dir.path.string() << ", tokenizer: byte}\n"
    << "train: " << train << "\n"
    << "metrics: " << metrics << "\n";
  return y.str();
}
}  // namespace

TEST_CASE("sink onset: the first layer strictly above the threshold, -1 when none", "[metrics]") {
  REQUIRE(sink_onset_layer({0.1, 0.8, 0.81, 0.95}, 0.8) == 2);
  REQUIRE(sink_onset_layer({0.9, 0.1}, 0.8) == 0);
  REQUIRE(sink_onset_layer({0.1, 0.2}, 0.8) == -1);
  REQUIRE(sink_onset_layer({}, 0.8) == -1);
  SinkMetrics m;
  m.layers.resize(3);
  const double score[3] = {0.2, 0.85, 0.9}, disp[3] = {2, 4, 9}, normed[3] = {1, 2, 3};
  for (int l = 0; l < 3; ++l) {
    m.layers[l].sink_score = score[l];
    m.layers[l].dim_disparity = disp[l];
    m.layers[l].dim_disparity_normed = normed[l];
    m.layers[l].effective_rank_output = l == 1 ? kNaN : 5.0;
  }
  summarise_paper_metrics(m, 0.8);
  REQUIRE(m.sink_onset == 1);
  REQUIRE(m.dim_disparity_mean == Approx(5.0));
  REQUIRE(m.dim_disparity_normed_mean == Approx(2.0));
  REQUIRE(std::isnan(m.effective_rank_output_mean));  // a layer not computed: no mean
  summarise_paper_metrics(m, 0.95);
  REQUIRE(m.sink_onset == -1);
}

TEST_CASE("score at key k over queries t > k leaves out the self term", "[metrics][probe]") {
  // B = 1, NH = 2, T = 4: A[t, k = 1] for t = 0..3 (A[0, 1] = 0 under the causal mask).
  const std::vector<double> mass = {0, 1.0, 0.5, 0.3,   // head 0
                                    0, 0.2, 0.4, 0.6};  // head 1
  const std::vector<double> s = key_score_after(mass, 1, 2, 4, 1);
  REQUIRE(s[0] == Approx((0.5 + 0.3) / 2));  // today's alpha_1 would be (1 + 0.5 + 0.3) / 3
  REQUIRE(s[1] == Approx((0.4 + 0.6) / 2));
  REQUIRE(std::isnan(key_score_after(mass, 1, 2, 4, 3)[0]));  // no query after the last key
  // Key 0 (here the same numbers read as A[t, 0]): over t = 1..3, and t = 0..3 for today's.
  REQUIRE(key_score_after(mass, 1, 2, 4, 0)[0] == Approx((1.0 + 0.5 + 0.3) / 3));
  REQUIRE(key_score_after(mass, 1, 2, 4, 0)[1] == Approx((0.2 + 0.4 + 0.6) / 3));
  REQUIRE(key_score(mass, 1, 2, 4, 0)[1] == Approx((0 + 0.2 + 0.4 + 0.6) / 4));
  REQUIRE_THROWS_AS(key_score_after(mass, 2, 2, 4, 1), ShapeError);
  // Today's score at key k keeps the self term: queries t >= k.
  const std::vector<double> today = key_score(mass, 1, 2, 4, 1);
  REQUIRE(today[0] == Approx((1.0 + 0.5 + 0.3) / 3));
  REQUIRE(today[1] == Approx((0.2 + 0.4 + 0.6) / 3));
  REQUIRE(key_score(mass, 1, 2, 4, 3)[1] == Approx(0.6));  // the last key: its own query only
  REQUIRE(key_score(mass, 1, 2, 4, 0)[0] == Approx((0 + 1.0 + 0.5 + 0.3) / 4));
  REQUIRE(std::isnan(key_score(mass, 1, 2, 4, 4)[0]));  // no such key
  REQUIRE_THROWS_AS(key_score(mass, 1, 2, 5, 1), ShapeError);
}

TEST_CASE("across-sample variance per position, averaged over dims (the 1/(t+1) law)",
          "[metrics][probe]") {
  // B = 2 samples, T = 2 positions, D = 2 dims.
  // t = 0: dim 0 takes 1 and 3 (unbiased var 2), dim 1 takes 0 and 0 (var 0): mean 1.
  // t = 1: dim 0 takes 2 and 2 (var 0), dim 1 takes -1 and 3 (var 8): mean 4.
  const std::vector<double> x = {1, 0, 2, -1,   // sample 0: (t0: 1, 0), (t1: 2, -1)
                                 3, 0, 2, 3};   // sample 1: (t0: 3, 0), (t1: 2, 3)
  const std::vector<double> v = across_sample_variance(x, 2, 2, 2);
  REQUIRE(v[0] == Approx((2.0 + 0.0) / 2));  // unbiased: (1-2)^2 + (3-2)^2 over B - 1 = 2
  REQUIRE(v[1] == Approx((0.0 + 8.0) / 2));  // dim 1 at t1: mean 1, (-2)^2 + 2^2 = 8
  REQUIRE_THROWS_AS(across_sample_variance(x, 1, 4, 2), ShapeError);
  // The tensor overload reads (B, T, NH, HS) as (B, T, NH * HS).
  REQUIRE(across_sample_variance(Tensor::from_doubles(x, {2, 2, 1, 2}, DType::F64)) == v);
}

TEST_CASE("uniform averaging of i.i.d. values: across-sample variance follows 1/(t+1)",
          "[metrics][probe]") {
  // o_t = mean of v_0..v_t with v i.i.d. +-1: Var(o_t) = 1 / (t + 1) exactly in expectation.
  const int64_t B = 4000, T = 8, D = 4;
  const std::vector<double> signs = rand_ints({B, T, D}, RngKey{3, 7, 0}, 2).to_doubles();
  std::vector<double> o(B * T * D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      double sum = 0;
      for (int64_t t = 0; t < T; ++t) {
        sum += 2 * signs[(b * T + t) * D + d] - 1;
        o[(b * T + t) * D + d] = sum / static_cast<double>(t + 1);
      }
    }
  const std::vector<double> v = across_sample_variance(o, B, T, D);
  for (int64_t t = 0; t < T; ++t) REQUIRE(v[t] == Approx(1.0 / (t + 1)).epsilon(0.06));
}

TEST_CASE("kurtosis: Pearson, 3-free; one spike among n entries is about n", "[metrics]") {
  REQUIRE(kurtosis({1, -1, 1, -1}) == Approx(1.0));  // two-point: m4 = m2^2
  std::vector<double> spike(10, 0.0);
  spike[3] = 5;  // mean 0.5: deviations -0.5 (9 times) and 4.5: m2 = 2.25, m4 = 41.0625
  const double m2 = (9 * 0.25 + 4.5 * 4.5) / 10, m4 = (9 * 0.0625 + std::pow(4.5, 4)) / 10;
  REQUIRE(kurtosis(spike) == Approx(m4 / (m2 * m2)));
  REQUIRE(kurtosis(spike) == Approx(8.1111111).epsilon(1e-6));
  REQUIRE(std::isnan(kurtosis({2, 2, 2})));
}

TEST_CASE("super neuron from the weights: largest row norm product, its firing and its column",
          "[metrics][probe]") {
  // F = 3 neurons, C = 2 channels. Row norms: gate (1, 2, 1), up (3, 1, 1): products 3, 2, 1.
  const std::vector<double> gate = {1, 0, 0, 2, 1, 0}, up = {0, 3, 1, 0, 0, 1};
  // down (C, F): column 0 is (2, -4): writes into channel 1 (read transposed, down[n * C + c],
  // it would be (2, 1): channel 0).
  const std::vector<double> down = {2, 1, 1, -4, 1, 1};
  // u (B = 1, T = 3, F): neuron 0 is 6 at t = 0 and 1, 2 at t = 1, 2.
  const std::vector<double> u = {6, 0, 0, 1, 9, 9, -2, 9, 9};
  // The layer output's first token (B = 1, C): channel 1 is the largest.
  const std::vector<double> y0 = {0.5, -7};
  // The column of u that find_super_neuron asks for (B = 1, T = 3), and which neurons it asked.
  std::vector<int64_t> asked;
  const auto column = [&](int64_t n) {
    asked.push_back(n);
    return std::vector<double>{u[n], u[3 + n], u[6 + n]};
  };
  const SuperNeuron s = find_super_neuron(gate, up, down, 3, 2, column, 1, 3, y0);
  REQUIRE(asked == std::vector<int64_t>{0});  // only the chosen neuron's column
  REQUIRE(s.neuron == 0);
  REQUIRE(s.weight_norm == Approx(3.0));
  REQUIRE(s.first_token_ratio == Approx(6.0 / 1.5));
  REQUIRE(s.down_kurtosis == Approx(1.0));  // two values: always 1
  REQUIRE(s.down_channel == 1);
  REQUIRE(s.disparity_channel == 1);
  // GPT-2 (no up rows): the gate (c_fc) norm alone picks neuron 1.
  const SuperNeuron g = find_super_neuron(gate, {}, down, 3, 2, column, 1, 3, y0);
  REQUIRE(g.neuron == 1);
  REQUIRE(g.first_token_ratio == Approx(0.0 / 9.0));  // neuron 1: 0 at t = 0, 9 after
  // out_first's rows and the column's length must match B and T
  REQUIRE_THROWS_AS(find_super_neuron(gate, up, down, 3, 2, column, 2, 3, y0), ShapeError);
  const auto short_column = [](int64_t) { return std::vector<double>{6, 1}; };  // T = 2, not 3
  REQUIRE_THROWS_AS(find_super_neuron(gate, up, down, 3, 2, short_column, 1, 3, y0), ShapeError);
}

TEST_CASE("standard error of the mean: sample sd over sqrt(n)", "[metrics]") {
  REQUIRE(standard_error({1, 2, 3, 4}) == Approx(std::sqrt(5.0 / 3.0) / 2.0));
  REQUIRE(std::isnan(standard_error({2.5})));
}

TEST_CASE("paired standard error of a difference: the standard error of the differences",
          "[metrics]") {
  // a - b = (.5, -.5, 1, -.5): mean .125, squared deviations sum 1.6875, sd .75, s.e. .75 / 2.
  REQUIRE(paired_standard_error({1, 2, 3, 4}, {0.5, 2.5, 2, 4.5}) == Approx(0.375));
  // Losses that share the batches' difficulty: each loss varies a lot, their difference not.
  const std::vector<double> hard{1.0, 5.0, 2.0, 8.0}, shifted{1.1, 5.1, 2.1, 8.1};
  REQUIRE(standard_error(hard) > 1.0);
  REQUIRE(paired_standard_error(shifted, hard) == Approx(0.0).margin(1e-12));
  REQUIRE(std::isnan(paired_standard_error({1.0}, {2.0})));
  REQUIRE_THROWS_AS(paired_standard_error({1, 2}, {1, 2, 3}), ValueError);
}

TEST_CASE("the comparison's val loss differences: paired over the same batches, or a note",
          "[metrics]") {
  VariantSummary base, head, other, none;
  base.name = "baseline";
  base.val_loss = 2.0;
  base.val_losses = {1.0, 3.0};
  base.val_batches_hash = 7;
  head.name = "headwise_rmsnorm";
  head.val_loss = 1.95;
  head.val_losses = {0.9, 3.0};  // differences -.1 and 0: mean -.05, s.e. .05
  head.val_batches_hash = 7;
  other = head;
  other.name = "other";
  other.val_batches_hash = 8;  // other batches: no pairs
  none.name = "unevaluated";
  std::ostringstream out;
  Console console(out, false);
  console.val_differences({base, head, other, none});
  const std::string text = out.str();
  INFO(text);
  REQUIRE(test::contains(text, "val loss, headwise_rmsnorm - baseline: -0.0500 ± 0.0500 (paired s.e. "
                         "over the same 2 validation batches)"));
  REQUIRE(test::contains(text, "val loss, other - baseline: other validation batches"));
  REQUIRE_FALSE(test::contains(text, "unevaluated"));
  std::ostringstream alone;
  Console one(alone, false);
  one.val_differences({base});
  REQUIRE(alone.str().empty());
}

TEST_CASE("sink score, disparity after the input norm and output ranks from a capture",
          "[metrics]") {
  for (Arch arch : {Arch::Llama, Arch::Gpt2}) {
    INFO(choice_text(arch));
    ModelSection cfg = test::tiny_model(arch, AttnOutputNorm::None);
    cfg.n_embd = 16;
    cfg.block_size = 9;
    GPT model(cfg, 5, DType::F64);
    const Tensor ids = rand_ints({3, 9}, RngKey{5, 3, 0}, 11);
    const ForwardCapture cap = test::capture_of(model, ids);
    SinkMetrics m = compute_sink_metrics(cap, 0.3, false);
    const int64_t B = 3, NH = 2, T = 9, C = 16;
    for (size_t l = 0; l < 2; ++l) {
      const LayerCapture& c = cap.layers[l];
      // Sink score: mean over b, heads and ALL queries of A[t, 0].
      const std::vector<double> A =
          ops::attention_probabilities(c.q, c.k, ops::AttentionOptions{}).to_doubles();
      double score = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < NH; ++h)
          for (int64_t t = 0; t < T; ++t) score += A[((b * NH + h) * T + t) * T] / (B * NH * T);
      REQUIRE(m.layers[l].sink_score == Approx(score).epsilon(1e-10));
      // Disparity of h_0 = the input norm of x_0, from the capture.
      REQUIRE(m.layers[l].dim_disparity_normed ==
              Approx(test::first_token_disparity(c.residual_normed.to_doubles(), B, T, C))
                  .epsilon(1e-10));
      REQUIRE(std::isnan(m.layers[l].effective_rank_output));
    }
    // Output ranks: layer 0's output is layer 1's input; the last layer's is final_residual.
    OutputRanks ranks;
    ranks.limit = 2;
    ranks.add(cap);
    REQUIRE(ranks.sequences == 2);
    ranks.store(m);
    const std::vector<double> x1 = cap.layers[1].residual.to_doubles();
    const std::vector<double> xf = cap.final_residual.to_doubles();
    auto seq = [&](const std::vector<double>& x, int64_t b) {
      return std::vector<double>(x.begin() + b * T * C, x.begin() + (b + 1) * T * C);
    };
    REQUIRE(m.layers[0].effective_rank_output ==
            Approx((effective_rank(seq(x1, 0), T, C) + effective_rank(seq(x1, 1), T, C)) / 2));
    REQUIRE(m.layers[1].effective_rank_output ==
            Approx((effective_rank(seq(xf, 0), T, C) + effective_rank(seq(xf, 1), T, C)) / 2));
  }
}

TEST_CASE("sigmoid attention: the sink metrics read key 0's share of each row, "
          "sigmoid(s_t0) / sum_k sigmoid(s_tk)",
          "[metrics]") {
  // By hand: weight .5 in a row of mean weight .25 over T = 4 keys (sum 1) is half of it; an
  // empty row gives 0.
  const double weights[] = {0.5, 0.2}, means[] = {0.25, 0.0};
  REQUIRE(row_shares(weights, means, 2, 4) == std::vector<double>{0.5, 0.0});
  // The row sums from attention_row_means, or from the forward itself (run.sigmoid_row_sums).
  for (bool from_forward : {false, true})
  for (Arch arch : {Arch::Llama, Arch::Gpt2}) {  // GPT-2's q, k: views into the packed qkv
    INFO(choice_text(arch) << (from_forward ? ", row sums from the forward" : ""));
    const ops::SigmoidRowSumsGuard row_sums(from_forward);
    ModelSection cfg = test::tiny_model(arch, AttnOutputNorm::None);
    cfg.n_embd = 16;
    cfg.block_size = 9;
    cfg.attention = AttentionKind::Sigmoid;
    cfg.isolate_positions = {4};  // query 4 sees only itself: key 0's share there is 0
    cfg.isolate_layers = {1};
    GPT model(cfg, 5, DType::F64);
    const Tensor ids = rand_ints({3, 9}, RngKey{5, 4, 0}, 11);
    const ForwardCapture cap = test::capture_of(model, ids);
    const SinkMetrics m = compute_sink_metrics(cap, 0.3, false);
    const int64_t B = 3, NH = 2, T = 9;
    for (size_t l = 0; l < 2; ++l) {
      INFO("layer " << l);
      const LayerCapture& c = cap.layers[l];
      const std::vector<double> A =
          ops::attention_probabilities(c.q, c.k, c.attention).to_doubles();  // (B, NH, T, T)
      const std::vector<double> means = attention_row_means(c.q, c.k, c.attention).to_doubles();
      REQUIRE(c.row_sums.defined() == from_forward);
      REQUIRE_FALSE(c.lse.defined());
      const std::vector<double> sums =
          from_forward ? c.row_sums.to_doubles() : std::vector<double>();  // (B, NH, T)
      double score = 0;
      for (int64_t h = 0; h < NH; ++h) {
        double all = 0, rest = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < T; ++t) {
            const double* row = &A[((b * NH + h) * T + t) * T];
            double sum = 0;
            for (int64_t k = 0; k < T; ++k) sum += row[k];
            REQUIRE(means[(b * NH + h) * T + t] * T == Approx(sum).epsilon(1e-12));
            if (from_forward) REQUIRE(sums[(b * NH + h) * T + t] == Approx(sum).epsilon(1e-12));
            const double share = row[0] / sum;
            if (l == 1 && t == 4) REQUIRE(share == 0);
            if (t == 0) REQUIRE(share == Approx(1.0));  // the first row holds key 0 alone
            all += share;
            if (t >= 1) rest += share;
          }
        REQUIRE(m.layers[l].alpha0[h] == Approx(all / (B * T)).epsilon(1e-12));
        REQUIRE(m.layers[l].sink_mass[h] == Approx(rest / (B * (T - 1))).epsilon(1e-12));
        score += all / (B * T) / NH;
      }
      REQUIRE(m.layers[l].sink_score == Approx(score).epsilon(1e-12));
      // Rows are shares now, no longer raw weights (about 0.5 each at initialisation).
      REQUIRE(m.layers[l].sink_mass[0] < 0.4);
    }
  }
}

TEST_CASE("run.sigmoid_row_sums: a sigmoid run's losses and norms keep their bits and its sink "
          "scores agree with those of attention_row_means",
          "[metrics]") {
  test::TempDir dir;
  write_letter_data(dir);
  const ops::SigmoidRowSumsGuard restore(false);  // the runs set it for the process
  std::vector<std::vector<std::string>> logs;  // (2 settings) the JSONL records, untimed
  for (const char* row_sums : {"false", "true"}) {
    std::ostringstream y;
    y << "run: {name: r" << row_sums << ", out_dir: " << dir.path.string()
      << ", sigmoid_row_sums: " << row_sums << "}\n"
      << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, "
         "attention: sigmoid}\n"
      << "data: {dir: " << dir.path.string() << ", tokenizer: byte}\n"
      << "train: {steps: 3, batch_size: 4, eval_every: 0, eval_batches: 1, sample_tokens: 0}\n"
      << "metrics: {every: 1, rank_sequences: 0}\n";
    std::ostringstream console;
    Run(parse_config(y.str(), "r.yaml"), console).train();
    REQUIRE(ops::sigmoid_row_sums == (std::string(row_sums) == "true"));  // the run set it
    logs.push_back(test::untimed_lines(dir.file(std::string("r") + row_sums + "/main/metrics.jsonl")));
  }
  REQUIRE(logs[0].size() == logs[1].size());
  REQUIRE(logs[0].size() >= 3);
  for (size_t i = 0; i < logs[0].size(); ++i) {
    INFO("off: " << logs[0][i] << "\non:  " << logs[1][i]);
    for (const char* field : {"loss", "grad_norm", "batch_hash", "dim_disparity"})
      REQUIRE(test::json_field(logs[1][i], field) == test::json_field(logs[0][i], field));
    const std::vector<double> off = test::json_numbers(test::json_field(logs[0][i], "sink_score"));
    const std::vector<double> on = test::json_numbers(test::json_field(logs[1][i], "sink_score"));
    REQUIRE(off.size() == 2);  // a metrics step: one score a layer
    REQUIRE(on.size() == off.size());
    for (size_t l = 0; l < off.size(); ++l) REQUIRE(on[l] == Approx(off[l]).epsilon(1e-5));
  }
}

TEST_CASE("probe: the paper's readings on short windows and on random tokens; the trainer logs "
          "the output rank and the val loss's standard error",
          "[probe][metrics]") {
  test::TempDir dir;
  write_letter_data(dir);
  std::ostringstream console;
  Run(parse_config(tiny_letter_run(dir, "p",
                                   "{steps: 4, batch_size: 4, eval_every: 2, eval_batches: 3, "
                                   "sample_tokens: 0}",
                                   "{rank_sequences: 6}"),
                   "p.yaml"),
      console)
      .train();
  // The trainer: val_loss_se and the output ranks (over 6 sequences: two eval batches of 4).
  REQUIRE(console.str().find("(s.e.)") != std::string::npos);
  REQUIRE(console.str().find("6 seq.") != std::string::npos);
  // Each evaluation line ends with the seconds it took.
  const std::string printed = console.str();
  const size_t eval_at = printed.find("(s.e.)");
  const std::string eval_line = printed.substr(eval_at, printed.find('\n', eval_at) - eval_at);
  INFO(eval_line);
  REQUIRE(eval_line.size() > 2);
  REQUIRE(eval_line.compare(eval_line.size() - 2, 2, " s") == 0);
  std::ifstream log(dir.file("p/main/metrics.jsonl"));
  std::string line, last;
  while (std::getline(log, line)) last = line;
  for (const char* key : {"\"val_loss_se\":0", "\"effective_rank_output\":[", "\"sink_score\":[",
                          "\"sink_onset\":", "\"dim_disparity_normed_mean\":"}) {
    INFO(key << " in " << last);
    REQUIRE(last.find(key) != std::string::npos);
  }
  const std::string ck = dir.file("p/main/ckpt/step_00000004.h5");
  ProbeOptions opt;
  opt.batches = 2;
  opt.window = 8;
  opt.random_tokens = 5;
  opt.amplify = 3;  // lambda 1: no change, but reports key 3
  opt.out = dir.file("probe.json");
  const ProbeResult r = probe_checkpoint(ck, opt, console);
  const int64_t T = 8, k = 3;
  REQUIRE(r.var_across.size() == 2);
  REQUIRE(r.super.size() == 2);
  for (size_t l = 0; l < 2; ++l) {
    REQUIRE(r.var_across[l].size() == T);
    for (double v : r.var_across[l]) REQUIRE(v > 0);
    REQUIRE(r.super[l].neuron >= 0);
    double alpha0 = 0;
    for (double a : r.metrics.layers[l].alpha0) alpha0 += a / 2;
    REQUIRE(r.metrics.layers[l].sink_score == Approx(alpha0));
    for (size_t h = 0; h < 2; ++h) {
      // alpha_k (T - k) = mean A[k, k] + score_after (T - k - 1): the self term is in [0, 1].
      const double self = r.key_score[l][h] * (T - k) - r.key_score_after[l][h] * (T - k - 1);
      REQUIRE(self >= -1e-6);
      REQUIRE(self <= 1 + 1e-6);
    }
  }
  std::ifstream json(opt.out);
  const std::string text((std::istreambuf_iterator<char>(json)), {});
  for (const char* key : {"\"key_score_after\":[[", "\"var_across\":[[", "\"window\":8",
                          "\"random_tokens\":5", "\"super\":{\"neuron\":["})
    REQUIRE(text.find(key) != std::string::npos);
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = opt;
        bad.window = 17;
        probe_checkpoint(ck, bad, console);
      },
      {"--window is 17", "block_size 16"});
  // A key outside the window probed is refused (the scores would read another key).
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = opt;
        bad.amplify = 8;  // window 8: positions 0..7
        probe_checkpoint(ck, bad, console);
      },
      {"key 8", "outside the 8 positions probed", "--window 8"});
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = opt;
        bad.amplify = -1;
        bad.isolate = {2, 9};
        probe_checkpoint(ck, bad, console);
      },
      {"key 9", "--window 8"});
  // The last position has no query after it: its score over t > k would be empty.
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = opt;
        bad.amplify = 7;
        probe_checkpoint(ck, bad, console);
      },
      {"key 7 is the last of the 8 positions", "below 7"});
  test::require_error<ConfigError>(
      [&] {
        ProbeOptions bad = opt;
        bad.window = 1;
        probe_checkpoint(ck, bad, console);
      },
      {"--window is 1", "a query after key 0"});
  // On 8 positions uniform attention gives key 0 alpha0 = H_8 / 8 = 0.340 > 0.3: warned.
  REQUIRE(console.str().find("uniform attention alone gives key 0 alpha0 0.33") !=
          std::string::npos);
  std::ostringstream long_window;
  ProbeOptions at_key0 = opt;  // no intervention: the scores read key 0, at 16 positions
  at_key0.amplify = -1;
  at_key0.window = 16;
  at_key0.random_tokens = 0;
  const ProbeResult r0 = probe_checkpoint(ck, at_key0, long_window);
  REQUIRE(long_window.str().find("uniform attention alone") == std::string::npos);  // 0.21
  REQUIRE(r0.key == 0);
  for (size_t l = 0; l < 2; ++l)
    for (size_t h = 0; h < 2; ++h)  // over t > 0: the sink mass, by its definition
      REQUIRE(r0.key_score_after[l][h] == Approx(r0.metrics.layers[l].sink_mass[h]).margin(1e-12));
}

TEST_CASE("an evaluation step that is not a metrics.every step still logs its effective ranks "
          "with the step's sink metrics",
          "[metrics]") {
  test::TempDir dir;
  write_letter_data(dir);
  std::ostringstream console;
  Run(parse_config(tiny_letter_run(dir, "e",
                                   "{steps: 5, batch_size: 4, eval_every: 3, eval_batches: 1, "
                                   "sample_tokens: 0}",
                                   "{every: 2, rank_sequences: 2}"),
                   "e.yaml"),
      console)
      .train();
  std::map<int64_t, std::string> records;  // step: the record (the final evaluation's last)
  for (const std::string& line : test::untimed_lines(dir.file("e/main/metrics.jsonl")))
    records[std::stoll(test::json_field(line, "step"))] = line;
  REQUIRE(records.size() == 6);  // steps 0 to 4 and the final evaluation (5)
  // Steps 0, 2 and 4 are metrics steps; step 3 evaluates, so it is one too; 1 is neither.
  for (int64_t step : {0, 2, 3, 4}) {
    INFO("step " << step << ": " << records[step]);
    REQUIRE(records[step].find("\"sink_score\":[") != std::string::npos);
  }
  REQUIRE(records[1].find("\"sink_score\"") == std::string::npos);
  for (int64_t step : {3, 5}) {  // the evaluations: step 3's and the final one
    INFO("step " << step << ": " << records[step]);
    const std::vector<double> ranks =
        test::json_numbers(test::json_field(records[step], "effective_rank_output"));
    REQUIRE(ranks.size() == 2);
    for (double r : ranks) REQUIRE(r > 1.0);
  }
}

TEST_CASE("amplify with the precomputed mu: o_k <- mu + lambda (o_k - mu), mu the mean value "
          "vector of other tokens",
          "[probe]") {
  ModelSection m = test::tiny_model(Arch::Llama, AttnOutputNorm::None);
  m.n_embd = 16;
  m.block_size = 9;
  const GPT plain(m, 3, DType::F64);
  const Tensor ids = rand_ints({3, 9}, RngKey{8, 1, 0}, 11);
  const Tensor other = rand_ints({4, 9}, RngKey{8, 2, 0}, 11);  // the tokens mu is taken over
  // value_means against the captured values directly.
  const std::vector<std::vector<double>> mu = value_means(plain, other);
  const std::vector<double> v0 = test::capture_of(plain, other).layers[0].v.to_doubles();
  const int64_t C = 16;
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0;
    for (int64_t n = 0; n < 4 * 9; ++n) mean += v0[n * C + c] / 36.0;
    REQUIRE(mu[0][c] == Approx(mean).epsilon(1e-12));
  }
  ModelSection amp = m;
  amp.amplify_position = 4;
  amp.amplify_lambda = 7.0;
  amp.amplify_layers = {0};
  GPT model(amp, 3, DType::F64);
  model.set_amplify_mean(mu);
  const std::vector<double> before = test::capture_of(plain, ids).layers[0].attn_out.to_doubles();
  const std::vector<double> after = test::capture_of(model, ids).layers[0].attn_out.to_doubles();
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 9; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const size_t i = (b * 9 + t) * C + c;
        const double want = t == 4 ? mu[0][c] + 7.0 * (before[i] - mu[0][c]) : before[i];
        REQUIRE(after[i] == Approx(want).epsilon(1e-10));
      }
  model.set_amplify_mean({std::vector<double>(3, 0.0)});
  test::require_error<ShapeError>([&] { test::capture_of(model, ids); },
                                  {"layer 0 has 3 values", "16"});
  // random_token_value_means: finite means of every layer's NH * HS values.
  const auto random_mu = random_token_value_means(plain, 40, 9, 2, 7, Device::cpu());
  REQUIRE(random_mu.size() == 2);
  for (const auto& layer : random_mu) REQUIRE(layer.size() == 16);
  // Every window its own draws, whatever the batch: one window a batch gives the mean of five
  // windows in one batch (a review found each batch the last one shifted by `batch` tokens).
  const auto one_by_one = random_token_value_means(plain, 45, 9, 1, 7, Device::cpu());
  const auto at_once = random_token_value_means(plain, 45, 9, 5, 7, Device::cpu());
  for (size_t l = 0; l < 2; ++l)
    for (int64_t c = 0; c < C; ++c) REQUIRE(one_by_one[l][c] == Approx(at_once[l][c]).epsilon(1e-12));
}

TEST_CASE("effective rank: exp of the entropy of the normalised singular values, tall or wide",
          "[metrics]") {
  // Columns 3 e_0 and 1 e_1 of a 6 x 4 matrix (and its 4 x 6 transpose): singular values 3, 1,
  // 0, 0; p = (0.75, 0.25); rank = exp(-(0.75 ln 0.75 + 0.25 ln 0.25)) = 1.7548...
  std::vector<double> tall(6 * 4, 0.0), wide(4 * 6, 0.0);
  tall[0 * 4 + 0] = 3;
  tall[1 * 4 + 1] = 1;
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 4; ++c) wide[c * 6 + r] = tall[r * 4 + c];
  const double expected = std::exp(-(0.75 * std::log(0.75) + 0.25 * std::log(0.25)));
  REQUIRE(effective_rank(tall, 6, 4) == Approx(expected).epsilon(1e-12));
  REQUIRE(effective_rank(wide, 4, 6) == Approx(expected).epsilon(1e-12));
  // Rotate the tall matrix's rows: the same singular values, dense entries.
  std::vector<double> rotated(6 * 4, 0.0);
  const double cs = std::cos(0.3), sn = std::sin(0.3);
  for (int c = 0; c < 4; ++c)
    for (int r = 0; r < 6; r += 2) {
      rotated[r * 4 + c] = cs * tall[r * 4 + c] - sn * tall[(r + 1) * 4 + c];
      rotated[(r + 1) * 4 + c] = sn * tall[r * 4 + c] + cs * tall[(r + 1) * 4 + c];
    }
  REQUIRE(effective_rank(rotated, 6, 4) == Approx(expected).epsilon(1e-9));
  REQUIRE(effective_rank(std::vector<double>(12, 0.0), 3, 4) == 0.0);
}

TEST_CASE("val_se_advice: batches for a s.e. below 0.002, or more held-out text", "[metrics]") {
  // s.e. falls as 1/sqrt(batches): 0.004 over 4 batches needs 4 * (0.004 / 0.002)^2 = 16.
  const std::string more = val_se_advice(0.004, 4, 100);
  REQUIRE(test::contains(more, "about 16 validation batches"));
  REQUIRE(test::contains(more, "train.eval_batches, now 4"));
  const std::string held_out = val_se_advice(0.004, 4, 10);
  REQUIRE(test::contains(held_out, "about 16 batches, more than the 10"));
  REQUIRE(test::contains(held_out, "prepare.val_fraction"));
  REQUIRE(val_se_advice(0.0019, 4, 100).empty());
  REQUIRE(val_se_advice(std::nan(""), 1, 100).empty());  // one batch: no s.e.
  REQUIRE(test::contains(val_se_advice(0.0021, 100, 1000), "about 111 validation"));  // ceil(110.25)
}
