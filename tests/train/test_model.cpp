// The GPT model: parameter names and shapes, whole-model gradients in fp64, learning, and the
// sink metrics against a direct computation from materialised attention probabilities.
#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/precision.h"
#include "core/random.h"
#include "ops/add_norm.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/optimizer.h"
#include "ops/reduce.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/statistics.h"
#include "train/model.h"
#include "train/optimizer.h"
#include "train/sampler.h"
#include "train/metrics/sink_metrics.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
using sinklab::test::tiny_model;

namespace {

Tensor random_ids(int64_t B, int64_t T, int32_t V, uint64_t stream) {
  return rand_ints({B, T}, RngKey{5, stream, 0}, V);
}

// Finite differences on sampled elements of the flat parameter buffer (fp64 model).
void check_model_gradients(const ModelSection& cfg) {
  GPT model(cfg, 42, DType::F64);
  Tensor ids = random_ids(2, 5, 11, 1), targets = random_ids(2, 5, 11, 2);
  model.params().zero_grad();
  autograd::backward(model.forward(ids, targets).loss);
  std::vector<double> analytic = model.params().flat_grads().to_doubles();
  Tensor flat = model.params().flat_values();
  double* w = flat.data<double>();
  autograd::NoGradGuard no_grad;
  const double eps = 1e-6;
  // Every element of small models: all parameters, all layers, both archs.
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double saved = w[i];
    w[i] = saved + eps;
    const double plus = model.forward(ids, targets).loss.item();
    w[i] = saved - eps;
    const double minus = model.forward(ids, targets).loss.item();
    w[i] = saved;
    const double numeric = (plus - minus) / (2 * eps);
    INFO(choice_text(cfg.arch) << " " << choice_text(cfg.attn_output_norm) << " element " << i);
    REQUIRE(std::fabs(analytic[i] - numeric) <= 1e-7 + 1e-5 * std::fabs(numeric));
  }
}

}  // namespace

TEST_CASE("parameter names follow Hugging Face and shapes follow the config", "[model]") {
  ModelSection g = tiny_model(Arch::Gpt2, AttnOutputNorm::HeadwiseRmsNorm);
  g.tie_embeddings = false;
  GPT gpt(g, 1);
  const ParameterSet& p = gpt.params();
  REQUIRE(p["transformer.wte.weight"].shape() == Shape{11, 8});
  REQUIRE(p["transformer.wpe.weight"].shape() == Shape{6, 8});
  REQUIRE(p["transformer.h.1.attn.c_attn.weight"].shape() == Shape{24, 8});
  REQUIRE(p["transformer.h.1.attn.head_norm.weight"].shape() == Shape{2, 4});
  REQUIRE(p["transformer.h.0.mlp.c_fc.weight"].shape() == Shape{32, 8});
  REQUIRE(p["lm_head.weight"].shape() == Shape{11, 8});
  // gamma init: 0.02 * sqrt(C)
  REQUIRE(p["transformer.h.0.attn.head_norm.weight"].to_doubles()[0] ==
          Approx(0.02 * std::sqrt(8.0)));
  // gamma_init_scale multiplies either init
  g.gamma_init_scale = 0.25;
  REQUIRE(GPT(g, 1).params()["transformer.h.0.attn.head_norm.weight"].to_doubles()[3] ==
          Approx(0.25 * 0.02 * std::sqrt(8.0)));
  g.gamma_init = GammaInit::Ones;
  REQUIRE(GPT(g, 1).params()["transformer.h.1.attn.head_norm.weight"].to_doubles()[0] ==
          Approx(0.25));
  ModelSection l = tiny_model(Arch::Llama, AttnOutputNorm::None);
  GPT llama(l, 1);
  REQUIRE(llama.params().contains("model.layers.1.self_attn.o_proj.weight"));
  REQUIRE(llama.params().contains("model.layers.0.mlp.gate_proj.weight"));
  REQUIRE_FALSE(llama.params().contains("model.layers.0.self_attn.head_norm.weight"));
  REQUIRE_FALSE(llama.params().contains("lm_head.weight"));  // tied
  REQUIRE(llama.ffn_width() == 64);  // 2/3 * 4C = 21.3 -> rounded up to 64
  // The flat buffer holds every parameter exactly once.
  int64_t total = 0;
  for (const Param& q : llama.params().params()) total += q.value.numel();
  REQUIRE(total == llama.params().numel());
}

TEST_CASE("packed parameters: one leaf over adjacent weights, its gradient in each one's own",
          "[model]") {
  ParameterSet set({{"a", {2, 3}}, {"b", {1, 3}}, {"c", {3}}, {"d", {2, 3}}}, 7, DType::F64,
                   Device::cpu());
  const Tensor ab = set.packed({"a", "b"});  // (3, 3): a's rows, then b's
  REQUIRE(ab.defined());
  REQUIRE(ab.shape() == Shape{3, 3});
  std::vector<double> expected = set["a"].to_doubles();
  for (double v : set["b"].to_doubles()) expected.push_back(v);
  REQUIRE(ab.to_doubles() == expected);
  REQUIRE_FALSE(set.packed({"b", "a"}).defined());  // not in the buffers' order
  REQUIRE_FALSE(set.packed({"b", "c"}).defined());  // widths differ
  REQUIRE_FALSE(set.packed({"a", "d"}).defined());  // not adjacent
  // One product with the packed weight gives each weight the gradient of its own product.
  const Tensor x = randn({4, 3}, RngKey{3, 1, 0}, 1.0, DType::F64);  // (4, 3)
  set.zero_grad();
  autograd::backward(ops::sum(ops::linear(x, ab)));
  const std::vector<double> packed_grads = set.flat_grads().to_doubles();
  set.zero_grad();
  autograd::backward(ops::add(ops::sum(ops::linear(x, set["a"])), ops::sum(ops::linear(x, set["b"]))));
  REQUIRE(set.flat_grads().to_doubles() == packed_grads);
  REQUIRE(set.get("a").grad.to_doubles()[0] != 0.0);
}

TEST_CASE("shared parameters get identical init across variants; residual projections are "
          "scaled", "[model]") {
  GPT a(tiny_model(Arch::Llama, AttnOutputNorm::None), 7),
      b(tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm), 7);
  REQUIRE(a.params()["model.layers.1.mlp.up_proj.weight"].to_doubles() ==
          b.params()["model.layers.1.mlp.up_proj.weight"].to_doubles());
  ModelSection big = tiny_model(Arch::Llama, AttnOutputNorm::None);
  big.n_embd = 64;
  big.n_head = 4;
  GPT m(big, 3);
  auto stddev = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s / v.size());
  };
  REQUIRE(stddev(m.params()["model.layers.0.self_attn.q_proj.weight"].to_doubles()) ==
          Approx(0.02).epsilon(0.05));
  REQUIRE(stddev(m.params()["model.layers.0.self_attn.o_proj.weight"].to_doubles()) ==
          Approx(0.02 / 2.0).epsilon(0.05));  // 0.02 / sqrt(2 L), L = 2
}

TEST_CASE("a model to load starts at zeros; a model over another's weights shares them",
          "[model]") {
  const ModelSection cfg = tiny_model(Arch::Llama, AttnOutputNorm::None);
  GPT drawn(cfg, 7);
  GPT zeros(cfg, 7, DType::F32, Device::cpu(), InitialValues::Zeros);
  const std::vector<double> values = zeros.params().flat_values().to_doubles();
  REQUIRE(std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0; }));
  // Loaded with the drawn model's values, it computes exactly what that model does.
  zeros.params().flat_values().copy_from(drawn.params().flat_values());
  const Tensor ids = random_ids(2, 6, 11, 1), targets = random_ids(2, 6, 11, 2);
  autograd::NoGradGuard no_grad;
  REQUIRE(zeros.forward(ids, targets).loss.item() == drawn.forward(ids, targets).loss.item());
  // Another config over the same storage: the interventions differ, the weights are the same.
  ModelSection isolated = cfg;
  isolated.isolate_positions = {2};
  const GPT shared(isolated, drawn);
  REQUIRE(shared.params().flat_values().same_storage(drawn.params().flat_values()));
  GPT isolated_copy(isolated, 7);
  REQUIRE(shared.forward(ids, targets).loss.item() ==
          isolated_copy.forward(ids, targets).loss.item());
  REQUIRE(shared.forward(ids, targets).loss.item() != drawn.forward(ids, targets).loss.item());
  ModelSection wider = cfg;
  wider.n_embd = 16;
  test::require_error<ValueError>([&] { GPT(wider, drawn); },
                                  {"parameter 0", "model.embed_tokens.weight (11, 16)", "(11, 8)"});
}

TEST_CASE("whole-model gradients match finite differences in fp64", "[model][grad]") {
  for (Arch arch : {Arch::Gpt2, Arch::Llama})
    for (AttnOutputNorm norm : {AttnOutputNorm::None, AttnOutputNorm::HeadwiseRmsNorm})
      check_model_gradients(tiny_model(arch, norm));
  ModelSection sig = tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm);
  sig.attention = AttentionKind::Sigmoid;
  sig.gamma_shared = true;
  check_model_gradients(sig);
}

TEST_CASE("folding the residual stream's gradient into the norms' backward changes no bit of "
          "any gradient, and passes the fp64 finite-difference check", "[model][grad]") {
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    for (DType dt : {DType::F32, DType::F64}) {
      INFO(choice_text(arch) << (dt == DType::F64 ? " f64" : " f32"));
      const ModelSection cfg = tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
      Tensor ids = random_ids(2, 5, 11, 3), targets = random_ids(2, 5, 11, 4);
      std::vector<double> grads[2];
      int64_t folds[2];
      for (bool fold : {false, true}) {
        const bool before = ops::fold_residual_grads;
        ops::fold_residual_grads = fold;
        GPT model(cfg, 42, dt);
        model.params().zero_grad();
        const int64_t folded_before = ops::residual_grads_folded();
        autograd::backward(model.forward(ids, targets).loss);
        folds[fold] = ops::residual_grads_folded() - folded_before;
        ops::fold_residual_grads = before;
        grads[fold] = model.params().flat_grads().to_doubles();
      }
      REQUIRE(folds[0] == 0);
      // Every block's two norms fold (the stream's gradient waits at their input); the final
      // norm's input has no other consumer.
      REQUIRE(folds[1] == 2 * cfg.n_layer);
      REQUIRE(grads[1] == grads[0]);
    }
  }
  const bool before = ops::fold_residual_grads;
  ops::fold_residual_grads = true;
  check_model_gradients(tiny_model(Arch::Llama, AttnOutputNorm::None));
  ops::fold_residual_grads = before;
}

TEST_CASE("LLaMA's RoPE over the product's output (run.rope_in_place) changes no bit of the "
          "loss or any gradient", "[model][grad]") {
  for (DType dt : {DType::F32, DType::F64}) {
    INFO((dt == DType::F64 ? "f64" : "f32"));
    const ModelSection cfg = tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm);
    test::require_rope_in_place_changes_no_bit([&] { return GPT(cfg, 42, dt); },
                                               random_ids(2, 5, 11, 3), random_ids(2, 5, 11, 4),
                                               cfg.n_layer);
  }
  ops::RopeInPlaceGuard guard(true);
  check_model_gradients(tiny_model(Arch::Llama, AttnOutputNorm::None));
}

TEST_CASE("run.release_forward_inputs writes the loss's gradient over the logits and changes "
          "no bit of the loss or any gradient, GPT-2 and LLaMA", "[model][grad]") {
  for (Arch arch : {Arch::Gpt2, Arch::Llama})
    for (DType dt : {DType::F32, DType::F64}) {
      INFO((arch == Arch::Gpt2 ? "gpt2" : "llama") << (dt == DType::F64 ? " f64" : " f32"));
      const ModelSection cfg = tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
      test::require_release_forward_inputs_changes_no_bit([&] { return GPT(cfg, 42, dt); },
                                                          random_ids(2, 5, 11, 3),
                                                          random_ids(2, 5, 11, 4));
    }
  // The gradients themselves, checked in fp64 with the nodes keeping only what they read.
  autograd::KeepInputsGuard lean(false);
  check_model_gradients(tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm));
}

TEST_CASE("run.bf16_branch_outputs and run.flat_weight_operands change no bit on the CPU, GPT-2 "
          "and LLaMA", "[model]") {
  // kOperandDType is x's dtype on the CPU: the branch outputs stay f32 (ops/add_norm.h). The
  // CPU's products read f32 weights as they are: no weight operand scope opens.
  PrecisionGuard bf16(Precision::BF16);
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    INFO((arch == Arch::Gpt2 ? "gpt2" : "llama"));
    const ModelSection cfg = tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
    const auto make = [&] { return GPT(cfg, 42, DType::F32); };
    const Tensor ids = random_ids(2, 5, 11, 3), targets = random_ids(2, 5, 11, 4);
    test::require_bf16_branch_outputs(make, ids, targets, cfg.n_layer, false);
    test::require_flat_weight_operands_change_no_bit(make, ids, targets, cfg.n_layer, false);
  }
}

TEST_CASE("a small model learns a repeated pattern (loss decreases)", "[model]") {
  for (AttnOutputNorm norm : {AttnOutputNorm::None, AttnOutputNorm::HeadwiseRmsNorm}) {
    ModelSection cfg = tiny_model(Arch::Llama, norm);
    cfg.n_embd = 32;
    cfg.n_head = 4;
    cfg.block_size = 16;
    GPT model(cfg, 11);
    OptimSection optim;
    optim.lr = 3e-3;
    optim.weight_decay = 0.0;
    AdamW adam(model.params(), optim);
    // Sequence 0 1 2 ... 10 0 1 2 ...: next token is fully predictable.
    std::vector<int32_t> seq;
    for (int i = 0; i < 4 * 17; ++i) seq.push_back(i % 11);
    std::vector<int32_t> in, tg;
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 16; ++t) {
        in.push_back(seq[b * 3 + t]);
        tg.push_back(seq[b * 3 + t + 1]);
      }
    Tensor ids = Tensor::from_ints(in, {4, 16}), targets = Tensor::from_ints(tg, {4, 16});
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
      model.params().zero_grad();
      Tensor loss = model.forward(ids, targets).loss;
      if (step == 0) first = loss.item();
      last = loss.item();
      autograd::backward(loss);
      adam.step(model.params(), optim.lr);
    }
    INFO(choice_text(norm) << ": first " << first << " last " << last);
    REQUIRE(first > 2.0);  // ~log(11) at init
    REQUIRE(last < 0.3);
  }
}

TEST_CASE("sink metrics match a direct computation from attention probabilities", "[metrics]") {
  // var_pos and var_pos_normed from o and o_normed, and (run.head_norm_statistics) pooled from
  // the head-wise norm's statistics of each head.
  for (const bool head_norm_statistics : {false, true}) {
    INFO("head_norm_statistics " << head_norm_statistics);
    const ops::HeadNormStatisticsGuard from_norm(head_norm_statistics);
    ModelSection cfg = tiny_model(Arch::Gpt2, AttnOutputNorm::HeadwiseRmsNorm);
    cfg.n_embd = 16;
    cfg.block_size = 9;
    GPT model(cfg, 5, DType::F64);
    Tensor ids = random_ids(3, 9, 11, 3);
    ForwardCapture cap;
    autograd::NoGradGuard no_grad;
    model.forward(ids, Tensor(), &cap);
    ops::AttentionOptions opts;
    SinkMetrics m = compute_sink_metrics(cap, 0.3, true);
    REQUIRE(m.layers.size() == 2);
    int sinks = 0;
    for (size_t l = 0; l < 2; ++l) {
      const LayerCapture& c = cap.layers[l];
      Tensor probs = ops::attention_probabilities(c.q, c.k, opts);  // (B, NH, T, T)
      std::vector<double> A = probs.to_doubles();
      const int64_t B = 3, NH = 2, T = 9;
      for (int64_t h = 0; h < NH; ++h) {
        double mass = 0, alpha = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < T; ++t) {
            const double a = A[((b * NH + h) * T + t) * T + 0];
            alpha += a;
            if (t >= 1) mass += a;
          }
        REQUIRE(m.layers[l].sink_mass[h] == Approx(mass / (B * (T - 1))).epsilon(1e-10));
        REQUIRE(m.layers[l].alpha0[h] == Approx(alpha / (B * T)).epsilon(1e-10));
        sinks += alpha / (B * T) > 0.3;
      }
      // var_pos from o directly: channel variance at t, batch-averaged; var_pos_normed from the
      // head-wise norm's output (the metrics took both from the norm's row statistics per head).
      const int64_t C = 16;
      REQUIRE(c.attn_out_head_rows.defined() == head_norm_statistics);
      if (head_norm_statistics)
        REQUIRE(c.attn_out_head_rows.shape() == Shape({B, T, cfg.n_head, ops::kRowStats}));
      for (const bool normed : {false, true}) {
        const std::vector<double> o = (normed ? c.attn_out_normed : c.attn_out).to_doubles();
        const std::vector<double>& got = normed ? m.layers[l].var_pos_normed : m.layers[l].var_pos;
        for (int64_t t = 0; t < T; ++t) {
          double acc = 0;
          for (int64_t b = 0; b < B; ++b) {
            double mean = 0, sq = 0;
            for (int64_t j = 0; j < C; ++j) mean += o[(b * T + t) * C + j] / C;
            for (int64_t j = 0; j < C; ++j) sq += std::pow(o[(b * T + t) * C + j] - mean, 2) / C;
            acc += sq / B;
          }
          INFO("normed " << normed << " t " << t);
          REQUIRE(got[t] == Approx(acc).epsilon(1e-10));
        }
      }
      // Position 0 attends only to itself: its output is one value vector.
      REQUIRE(m.layers[l].var_ratio > 1.0);
      for (const bool normed : {false, true}) {  // var_pos[0] / mean_{t>=1} var_pos[t]
        const std::vector<double>& v = normed ? m.layers[l].var_pos_normed : m.layers[l].var_pos;
        double rest = 0;
        for (int64_t t = 1; t < T; ++t) rest += v[t] / (T - 1);
        REQUIRE((normed ? m.layers[l].var_ratio_normed : m.layers[l].var_ratio) ==
                Approx(v[0] / rest).epsilon(1e-10));
      }
      // Dimension disparity from x_l[0] directly.
      const std::vector<double> x = c.residual.to_doubles();  // (B, T, C)
      REQUIRE(m.layers[l].dim_disparity ==
              Approx(test::first_token_disparity(x, B, T, C)).epsilon(1e-10));
      // v (B, T, D): (D) mean_b |v[b, 0, d]|; |v| of every element, sorted (an even count
      // here, B * T * D, so the median is the two middle values' mean).
      const auto first_token_abs_means = [&](const std::vector<double>& v, int64_t D) {
        std::vector<double> means(D, 0.0);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t d = 0; d < D; ++d) means[d] += std::fabs(v[b * T * D + d]) / B;
        return means;
      };
      const auto sorted_abs = [](std::vector<double> v) {
        for (double& e : v) e = std::fabs(e);
        std::sort(v.begin(), v.end());
        return v;
      };
      const auto median_of_sorted = [](const std::vector<double>& v) {
        return 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
      };
      // dim_argmax: the channel of the largest batch-mean |x[b, 0, j]|; norm_ratio: |x[b, 0]|
      // over the mean of |x[b, t >= 1]|, batch-averaged; the order statistics of |x| over
      // every element: its median and its three largest.
      const std::vector<double> channel = first_token_abs_means(x, C);
      REQUIRE(m.layers[l].dim_argmax ==
              std::max_element(channel.begin(), channel.end()) - channel.begin());
      double norm_ratio = 0;
      for (int64_t b = 0; b < B; ++b) {
        double rest = 0, first = 0;
        for (int64_t t = 0; t < T; ++t) {
          double sq = 0;
          for (int64_t j = 0; j < C; ++j) sq += std::pow(x[(b * T + t) * C + j], 2);
          (t == 0 ? first : rest) += std::sqrt(sq);
        }
        norm_ratio += first / (rest / (T - 1)) / B;
      }
      REQUIRE(m.layers[l].norm_ratio == Approx(norm_ratio).epsilon(1e-10));
      const std::vector<double> all_x = sorted_abs(x);  // B * T * C = 432 values
      REQUIRE(m.layers[l].massive_median == Approx(median_of_sorted(all_x)));
      for (int i = 0; i < 3; ++i)
        REQUIRE(m.layers[l].massive_top[i] == all_x[all_x.size() - 1 - i]);
      // Super neurons from u directly: n* = argmax_n mean_b |u[b, 0, n]|, that mean, and its
      // ratio to the median |u| over every token and neuron.
      const std::vector<double> u = c.ffn_hidden.to_doubles();  // (B, T, F)
      const std::vector<double> neuron = first_token_abs_means(u, c.ffn_hidden.size(2));
      const int64_t star = std::max_element(neuron.begin(), neuron.end()) - neuron.begin();
      REQUIRE(m.layers[l].super_neuron == star);
      REQUIRE(m.layers[l].super_value == Approx(neuron[star]).epsilon(1e-10));
      REQUIRE(m.layers[l].super_ratio ==
              Approx(neuron[star] / median_of_sorted(sorted_abs(u))).epsilon(1e-10));
      REQUIRE(m.layers[l].effective_rank > 1.0);
      REQUIRE(m.layers[l].effective_rank <= 9.0);
    }
    REQUIRE(m.sink_rate == Approx(100.0 * sinks / 4));
  }
}

TEST_CASE("head-wise RMSNorm makes the post-norm variance ratio ~1", "[metrics]") {
  ModelSection cfg = tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm);
  cfg.n_embd = 64;
  cfg.n_head = 4;
  cfg.block_size = 64;
  cfg.gamma_init = GammaInit::Ones;
  cfg.vocab_size = 4096;  // distinct tokens: value vectors are (nearly) independent
  GPT model(cfg, 9);
  Tensor ids = random_ids(4, 64, 4096, 4);
  ForwardCapture cap;
  autograd::NoGradGuard no_grad;
  model.forward(ids, Tensor(), &cap);
  SinkMetrics m = compute_sink_metrics(cap, 0.3, false);
  // Layer 0 averages independent value vectors: the variance discrepancy at init (var_pos
  // falls like 1/(t+1)). Later layers mix a shared component into every position.
  REQUIRE(m.layers[0].var_ratio > 5.0);
  for (const LayerMetrics& l : m.layers) {
    INFO("pre-norm " << l.var_ratio << " post-norm " << l.var_ratio_normed);
    REQUIRE(l.var_ratio_normed == Approx(1.0).margin(0.1));
  }
}

TEST_CASE("metrics.order_statistics false leaves out the order statistics and nothing else",
          "[metrics]") {
  // Without the exact order statistics of |x_l| and |u| (the costliest passes), massive_median,
  // massive_top and super_ratio are NaN; the residual's row statistics come from a plain
  // row_statistics pass instead of the order statistics' first pass, so every other metric is
  // the one the full computation gives (CPU: the same bits).
  for (const Arch arch : {Arch::Gpt2, Arch::Llama}) {
    ModelSection cfg = tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
    cfg.n_embd = 32;
    cfg.n_head = 4;
    cfg.block_size = 24;
    GPT model(cfg, 5);
    Tensor ids = random_ids(3, 24, cfg.vocab_size, 6);
    ForwardCapture cap;
    autograd::NoGradGuard no_grad;
    model.forward(ids, Tensor(), &cap);
    const SinkMetrics full = compute_sink_metrics(cap, 0.3, false);
    const SinkMetrics cheap = compute_sink_metrics(cap, 0.3, false, nullptr, false);
    REQUIRE(cheap.sink_rate == full.sink_rate);
    REQUIRE(cheap.layers.size() == full.layers.size());
    for (size_t l = 0; l < full.layers.size(); ++l) {
      const LayerMetrics &a = full.layers[l], &b = cheap.layers[l];
      INFO((arch == Arch::Gpt2 ? "gpt2" : "llama") << " layer " << l);
      REQUIRE(std::isfinite(a.massive_median));
      REQUIRE(std::isfinite(a.super_ratio));
      REQUIRE(std::isnan(b.massive_median));
      for (int i = 0; i < 3; ++i) {
        REQUIRE(std::isfinite(a.massive_top[i]));
        REQUIRE(std::isnan(b.massive_top[i]));
      }
      REQUIRE(std::isnan(b.super_ratio));
      REQUIRE(b.sink_mass == a.sink_mass);
      REQUIRE(b.alpha0 == a.alpha0);
      REQUIRE(b.var_pos == a.var_pos);
      REQUIRE(b.var_pos_normed == a.var_pos_normed);
      REQUIRE(b.var_ratio == a.var_ratio);
      REQUIRE(b.var_ratio_normed == a.var_ratio_normed);
      REQUIRE(b.dim_disparity == a.dim_disparity);
      REQUIRE(b.dim_disparity_normed == a.dim_disparity_normed);
      REQUIRE(b.dim_argmax == a.dim_argmax);
      REQUIRE(b.norm_ratio == a.norm_ratio);
      REQUIRE(b.super_neuron == a.super_neuron);
      REQUIRE(b.super_value == a.super_value);
      REQUIRE(b.sink_score == a.sink_score);
    }
  }
}

TEST_CASE("sink metrics fetched before they are finished are the same metrics", "[metrics]") {
  // The trainer copies the queued results to the host on the side stream first
  // (fetch_sink_metrics), then finishes them; finishing must not fetch again or change a bit.
  ModelSection cfg = tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm);
  GPT model(cfg, 5);
  Tensor ids = random_ids(2, cfg.block_size, cfg.vocab_size, 8);
  ForwardCapture cap;
  autograd::NoGradGuard no_grad;
  model.forward(ids, Tensor(), &cap);
  QueuedSinkMetrics queued = queue_sink_metrics(cap);
  fetch_sink_metrics(queued);
  fetch_sink_metrics(queued);  // a second fetch keeps what the first brought
  const SinkMetrics fetched = finish_sink_metrics(std::move(queued), 0.3, false);
  const SinkMetrics direct = compute_sink_metrics(cap, 0.3, false);
  REQUIRE(std::isfinite(direct.layers.at(0).massive_median));  // the order statistics too
  test::require_same_metrics(direct, fetched);
  QueuedSinkMetrics nothing;
  REQUIRE(test::contains(test::caught<ValueError>([&] { fetch_sink_metrics(nothing); }).what(),
                         "fetch_sink_metrics: nothing queued"));
}

TEST_CASE("effective rank of known matrices", "[metrics]") {
  // Identity (4 x 4): 4 equal singular values -> rank 4. Rank one -> 1.
  std::vector<double> eye(16, 0.0);
  for (int i = 0; i < 4; ++i) eye[i * 5] = 1.0;
  REQUIRE(effective_rank(eye, 4, 4) == Approx(4.0).epsilon(1e-9));
  std::vector<double> r1;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) r1.push_back((i + 1.0) * (j - 2.0));
  REQUIRE(effective_rank(r1, 3, 5) == Approx(1.0).epsilon(1e-6));
  // Diagonal with singular values 3 and 1: p = (0.75, 0.25).
  std::vector<double> d{3, 0, 0, 0, 1, 0};
  const double h = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  REQUIRE(effective_rank(d, 2, 3) == Approx(std::exp(h)).epsilon(1e-9));
}

TEST_CASE("gram_upper's 4 x 4 blocks give every entry of the scalar loop, bit for bit",
          "[metrics]") {
  // n below, at and past whole blocks; the entries below the diagonal are left alone.
  for (auto [n, inner] : {std::pair<int64_t, int64_t>{3, 7}, {4, 5}, {8, 1}, {13, 29}, {37, 100}}) {
    INFO("n " << n << ", inner " << inner);
    std::vector<double> v(static_cast<size_t>(n * inner));  // (n, inner)
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + 0.1) * 3;
    std::vector<double> g(static_cast<size_t>(n * n), -7.0);  // (n, n)
    gram_upper(v.data(), n, inner, g.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        if (j < i) {
          REQUIRE(g[i * n + j] == -7.0);
          continue;
        }
        double acc = 0;
        for (int64_t k = 0; k < inner; ++k) acc += v[i * inner + k] * v[j * inner + k];
        INFO("entry " << i << ", " << j);
        REQUIRE(g[i * n + j] == acc);
      }
  }
}

TEST_CASE("effective rank of a reflected diagonal matrix (known singular values)", "[metrics]") {
  // M = H D with H = I - 2 u u^T / |u|^2 orthogonal: M (n, m) has the singular values of
  // D (n, m) = diag(s_i). Both the n <= m and the n > m (transposed) paths.
  for (auto [n, m] : {std::pair<int, int>{37, 50}, std::pair<int, int>{64, 29}}) {
    const int k = std::min(n, m);
    std::vector<double> sv(k), u(n);
    for (int i = 0; i < k; ++i) sv[i] = 1.0 + std::fmod(7.3 * i, 5.0);
    double uu = 0;
    for (int i = 0; i < n; ++i) uu += (u[i] = std::sin(1.7 * i + 0.3)) * u[i];
    std::vector<double> mat(n * m, 0.0);  // (n, m)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < k; ++j) mat[i * m + j] = ((i == j) - 2 * u[i] * u[j] / uu) * sv[j];
    double total = 0, entropy = 0;
    for (double s : sv) total += s;
    for (double s : sv) entropy -= s / total * std::log(s / total);
    REQUIRE(effective_rank(mat, n, m) == Approx(std::exp(entropy)).epsilon(1e-9));
  }
}

TEST_CASE("learning rate schedule: warm-up, cosine, floor", "[optim]") {
  OptimSection o;
  o.lr = 1e-3;
  o.min_lr = 1e-4;
  o.warmup_steps = 10;
  REQUIRE(learning_rate(o, 100, 0) == Approx(1e-4));
  REQUIRE(learning_rate(o, 100, 9) == Approx(1e-3));
  REQUIRE(learning_rate(o, 100, 10) == Approx(1e-3));
  REQUIRE(learning_rate(o, 100, 55) == Approx(5.5e-4));
  REQUIRE(learning_rate(o, 100, 100) == Approx(1e-4));
  REQUIRE(learning_rate(o, 100, 500) == Approx(1e-4));
}

TEST_CASE("AdamW matches a hand computation and decays only matrices", "[optim]") {
  ModelSection cfg = tiny_model(Arch::Llama, AttnOutputNorm::None);
  GPT model(cfg, 1);
  OptimSection o;
  o.weight_decay = 0.5;
  AdamW adam(model.params(), o);
  ParameterSet& p = model.params();
  const Param& w = p.get("model.layers.0.self_attn.q_proj.weight");
  const Param& g = p.get("model.norm.weight");
  REQUIRE(AdamW::decays(w.spec, o));
  REQUIRE_FALSE(AdamW::decays(g.spec, o));
  p.flat_grads().fill(0.25);
  const double w0 = w.value.to_doubles()[0], g0 = g.value.to_doubles()[0];
  adam.step(p, 0.01);
  // First step: m_hat = grad, v_hat = grad^2 -> update = lr * sign(grad) (+ decay lr*wd*w).
  REQUIRE(w.value.to_doubles()[0] == Approx(w0 - 0.01 * 0.25 / (0.25 + 1e-8) - 0.01 * 0.5 * w0));
  REQUIRE(g.value.to_doubles()[0] == Approx(g0 - 0.01));
  // Clipping scales the global norm down to the limit.
  const double norm = global_grad_norm(p);
  REQUIRE(norm == Approx(0.25 * std::sqrt(static_cast<double>(p.numel()))));
  clip_gradients(p, norm, 1.0);
  REQUIRE(global_grad_norm(p) == Approx(1.0).epsilon(1e-5));
  REQUIRE(clip_factor(norm, 1.0) == Approx(1.0 / norm).epsilon(1e-5));
  REQUIRE(clip_factor(norm, 0.0) == 1.0);      // off
  REQUIRE(clip_factor(0.5, 1.0) == 1.0);       // under the limit
}

namespace {
// Two tiny GPT-2s with the same weights and an AdamW each (weight decay 0.1): one update made
// two ways, a on the first, b on the second.
struct TwinUpdates {
  static OptimSection optim() {
    OptimSection o;
    o.weight_decay = 0.1;
    return o;
  }
  ModelSection cfg = tiny_model(Arch::Gpt2, AttnOutputNorm::None);
  GPT model_a{cfg, 4}, model_b{cfg, 4};
  ParameterSet& a = model_a.params();
  ParameterSet& b = model_b.params();
  AdamW adam_a{a, optim()}, adam_b{b, optim()};
  void set_grads(const Tensor& grads) {  // (numel) the same gradients on both
    a.flat_grads().copy_from(grads);
    b.flat_grads().copy_from(grads);
  }
};
}  // namespace

TEST_CASE("AdamW's grad_scale equals clipping the gradients in place first, bit for bit",
          "[optim]") {
  TwinUpdates twins;
  ParameterSet &a = twins.a, &b = twins.b;
  AdamW &in_place = twins.adam_a, &scaled = twins.adam_b;
  for (int step = 0; step < 3; ++step) {
    twins.set_grads(
        rand_uniform({a.numel()}, RngKey{6, 10, static_cast<uint64_t>(step)}, -1.0, 1.0));
    const double norm = global_grad_norm(a);
    const double factor = clip_gradients(a, norm, 0.5 * norm);
    REQUIRE(factor < 1.0);
    in_place.step(a, 0.01);
    scaled.step(b, 0.01, clip_factor(global_grad_norm(b), 0.5 * norm));
  }
  REQUIRE(b.flat_values().to_doubles() == a.flat_values().to_doubles());
  REQUIRE(scaled.v().to_doubles() == in_place.v().to_doubles());
}

TEST_CASE("AdamW's scheduled update (run.cuda_graph's) equals step(): plain, clipped, skipped",
          "[optim]") {
  // The learning rates are powers of two, so that their f32 copy in the schedule is the double
  // the eager step() is given (a GPU's step rounds it to f32 as well: [cuda] compares those).
  TwinUpdates twins;
  ParameterSet &a = twins.a, &b = twins.b;
  AdamW &eager = twins.adam_a, &scheduled = twins.adam_b;
  const double max_norm = 4.0;
  const double losses[4] = {3.0, 2.9, std::nan(""), 2.7};  // step 2 is skipped
  for (int step = 0; step < 4; ++step) {
    INFO("step " << step);
    // Steps 1 and 3 have a norm above max_norm (clipped), 0 below it.
    twins.set_grads(rand_uniform({a.numel()}, RngKey{6, 11, static_cast<uint64_t>(step)},
                                 step % 2 ? -1.0 : -1e-3, step % 2 ? 1.0 : 1e-3));
    const double lr = std::ldexp(1.0, -6 - step);
    const double norm = global_grad_norm(a);
    REQUIRE((step % 2 ? norm > max_norm : norm < max_norm));
    if (std::isfinite(losses[step])) eager.step(a, lr, clip_factor(norm, max_norm));
    Tensor results = Tensor::from_doubles({losses[step], 0.0}, {2}, DType::F64);  // (2)
    Tensor sum = results.narrow_view(0, 1, 1);
    ops::sum_of_squares_into(b.flat_grads(), sum);
    REQUIRE(results.to_doubles()[1] == ops::sum_of_squares(a.flat_grads()));  // same bits
    scheduled.write_schedule(lr);
    scheduled.queue_scheduled_step(b, results, max_norm);
    if (std::isfinite(losses[step])) scheduled.count_step();
    REQUIRE(scheduled.steps_taken() == eager.steps_taken());
    REQUIRE(b.flat_values().to_doubles() == a.flat_values().to_doubles());
    REQUIRE(scheduled.m().to_doubles() == eager.m().to_doubles());
    REQUIRE(scheduled.v().to_doubles() == eager.v().to_doubles());
  }
  REQUIRE(eager.steps_taken() == 3);
}

TEST_CASE("AdamW shards (ZeRO-1): two halves update exactly what one whole AdamW does",
          "[optim][distributed]") {
  ModelSection cfg = tiny_model(Arch::Gpt2, AttnOutputNorm::None);
  OptimSection o;
  o.weight_decay = 0.3;
  GPT whole_model(cfg, 4), shard_model(cfg, 4);
  ParameterSet& a = whole_model.params();
  ParameterSet& b = shard_model.params();
  const int64_t n = a.numel(), cut = n / 2 + 7;  // a cut inside some parameter
  AdamW whole(a, o);
  AdamW first(b, o, Shard{0, cut}), second(b, o, Shard{cut, n});
  REQUIRE_FALSE(whole.sharded());
  REQUIRE(first.sharded());
  REQUIRE(first.m().numel() == cut);
  REQUIRE(second.m().numel() == n - cut);
  for (int step = 0; step < 3; ++step) {
    Tensor grads = rand_uniform({n}, RngKey{6, 9, static_cast<uint64_t>(step)}, -1.0, 1.0);
    a.flat_grads().copy_from(grads);
    b.flat_grads().copy_from(grads);
    whole.step(a, 0.01);
    first.step(b, 0.01);
    second.step(b, 0.01);
  }
  REQUIRE(b.flat_values().to_doubles() == a.flat_values().to_doubles());
  std::vector<double> m = first.m().to_doubles(), rest = second.m().to_doubles();
  m.insert(m.end(), rest.begin(), rest.end());
  REQUIRE(m == whole.m().to_doubles());
  test::require_error<ValueError>([&] { AdamW bad(a, o, Shard{5, n + 1}); }, {"shard"});
}

TEST_CASE("sampling draws only ids below the tokenizer's vocabulary", "[model]") {
  // A model's vocabulary is padded (model.vocab_multiple): GPT-2's 50,257 tokens become 50,304
  // rows, and no tokenizer decodes the 47 extra ids. A random model spreads its draws over all.
  ModelSection m = tiny_model(Arch::Gpt2, AttnOutputNorm::None);
  m.vocab_size = 64;
  const GPT model(m, 11, DType::F32);
  const std::vector<int32_t> prompt = {1, 2, 3};
  auto draw = [&](int64_t count, double temperature, int64_t vocab_limit) {
    SamplingOptions o;
    o.count = count;
    o.temperature = temperature;
    o.seed = 5;
    o.stream = 7;
    o.vocab_limit = vocab_limit;
    return sample_tokens(model, prompt, o);
  };
  const auto all = draw(60, 1.0, 0);
  const auto limited = draw(60, 1.0, 10);
  REQUIRE(all.size() == 63);
  REQUIRE(limited.size() == 63);
  REQUIRE(*std::max_element(all.begin() + 3, all.end()) >= 10);
  REQUIRE(*std::max_element(limited.begin() + 3, limited.end()) < 10);
  // A limit at or above the model's vocabulary changes nothing.
  REQUIRE(draw(60, 1.0, 64) == all);
  REQUIRE(draw(20, 0.0, 1000) == draw(20, 0.0, 0));
}
