// [cuda] the training path on the GPU: AdamW, grad norm and clipping kernels against the CPU
// loop, and whole runs on CPU and GPU following the same loss curve.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/philox.h"
#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/runtime.h"
#endif
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/precision.h"
#include "ops/add_norm.h"
#include "ops/elementwise.h"
#include "ops/optimizer.h"
#include "ops/remembered_operands.h"
#include "ops/rmsnorm.h"
#include "train/config.h"
#include "train/model.h"
#include "train/metrics/sink_metrics.h"
#include "train/optimizer.h"
#include "train/data/shards.h"
#include "train/trainer.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

// B random sequences of T + 1 tokens below V (Philox stream `seed`): inputs (B, T) and their
// next-token targets (B, T), on the CPU.
std::pair<Tensor, Tensor> next_token_batch(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::vector<int32_t> ids, next;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t) {
      const auto token = static_cast<int32_t>(
          philox4x32_10(seed, static_cast<uint64_t>(b), static_cast<uint64_t>(t)).v[0] % V);
      if (t < T) ids.push_back(token);
      if (t > 0) next.push_back(token);
    }
  return {Tensor::from_ints(ids, {B, T}), Tensor::from_ints(next, {B, T})};
}

// The sink metrics' test models: GPT-2 without, LLaMA with head-wise RMSNorm; 300 tokens.
ModelSection metrics_model(Arch arch, int64_t n_embd, int64_t block_size) {
  ModelSection cfg = test::tiny_model(
      arch, arch == Arch::Llama ? AttnOutputNorm::HeadwiseRmsNorm : AttnOutputNorm::None);
  cfg.n_embd = n_embd;
  cfg.block_size = block_size;
  cfg.vocab_size = 300;
  return cfg;
}

}  // namespace

TEST_CASE("cuda: AdamW, grad norm and clipping match the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  std::vector<ParamSpec> specs{{"a.weight", {37, 19}, Init::Normal, 0.02, true, false},
                               {"a.bias", {19}, Init::Zeros, 0.0, false, false},
                               {"emb.weight", {101, 19}, Init::Normal, 0.02, true, true}};
  ParameterSet cpu(specs, 3, DType::F32, Device::cpu());
  ParameterSet gpu(specs, 3, DType::F32, Device::cuda(0));
  REQUIRE(gpu.flat_values().to_doubles() == cpu.flat_values().to_doubles());
  OptimSection o;
  o.weight_decay = 0.1;
  o.decay_embeddings = false;
  AdamW adam_cpu(cpu, o), adam_gpu(gpu, o);
  for (int step = 0; step < 3; ++step) {
    Tensor g = randn({cpu.numel()}, RngKey{9, static_cast<uint64_t>(step), 0});
    cpu.flat_grads().copy_from(g);
    gpu.flat_grads().copy_from(g.to_device(Device::cuda(0)));
    const double n_cpu = global_grad_norm(cpu), n_gpu = global_grad_norm(gpu);
    REQUIRE(n_gpu == Approx(n_cpu).epsilon(1e-12));
    clip_gradients(cpu, n_cpu, 5.0);
    clip_gradients(gpu, n_gpu, 5.0);
    adam_cpu.step(cpu, 1e-2);
    adam_gpu.step(gpu, 1e-2);
  }
  test::require_close(gpu.flat_values().to_device(Device::cpu()), cpu.flat_values(), 1e-5, 1e-7);
  test::require_close(adam_gpu.m().to_device(Device::cpu()), adam_cpu.m(), 1e-5, 1e-8);
}

TEST_CASE("cuda: the scheduled AdamW (a recorded step's) gives the eager update's bits: plain, "
          "clipped and skipped steps", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  std::vector<ParamSpec> specs{{"a.weight", {37, 19}, Init::Normal, 0.02, true, false},
                               {"a.bias", {19}, Init::Zeros, 0.0, false, false},
                               {"emb.weight", {101, 19}, Init::Normal, 0.02, true, true}};
  ParameterSet eager(specs, 3, DType::F32, Device::cuda(0));
  ParameterSet scheduled(specs, 3, DType::F32, Device::cuda(0));
  OptimSection o;
  o.weight_decay = 0.1;
  o.decay_embeddings = false;
  const double max_norm = 1.0;
  AdamW adam_eager(eager, o), adam_scheduled(scheduled, o);
  const double losses[4] = {3.0, 2.9, std::nan(""), 2.7};  // step 2 is skipped
  for (int step = 0; step < 4; ++step) {
    INFO("step " << step);
    // Steps 1 and 3 have a norm above max_norm (clipped), 0 below it.
    Tensor g = ops::scale(randn({eager.numel()}, RngKey{9, static_cast<uint64_t>(step), 0}),
                          step % 2 ? 3.0 : 0.01).detach();
    eager.flat_grads().copy_from(g.to_device(Device::cuda(0)));
    scheduled.flat_grads().copy_from(g.to_device(Device::cuda(0)));
    const double lr = 1e-2 / (step + 1);
    const double norm = global_grad_norm(eager);
    if (std::isfinite(losses[step]) && std::isfinite(norm))
      adam_eager.step(eager, lr, clip_factor(norm, max_norm));
    Tensor results = Tensor::from_doubles({losses[step], 0.0}, {2}, DType::F64)
                         .to_device(Device::cuda(0));  // (2) loss, sum of squares
    Tensor sum = results.narrow_view(0, 1, 1);
    ops::sum_of_squares_into(scheduled.flat_grads(), sum);
    adam_scheduled.write_schedule(lr);
    adam_scheduled.queue_scheduled_step(scheduled, results, max_norm);
    const std::vector<double> r = results.to_doubles();
    REQUIRE(r[1] == ops::sum_of_squares(eager.flat_grads()));  // the eager norm's sum
    if (std::isfinite(r[0]) && std::isfinite(std::sqrt(r[1]))) adam_scheduled.count_step();
    REQUIRE(adam_scheduled.steps_taken() == adam_eager.steps_taken());
    REQUIRE(scheduled.flat_values().to_doubles() == eager.flat_values().to_doubles());
    REQUIRE(adam_scheduled.m().to_doubles() == adam_eager.m().to_doubles());
    REQUIRE(adam_scheduled.v().to_doubles() == adam_eager.v().to_doubles());
  }
  REQUIRE(adam_eager.steps_taken() == 3);
}

// Trains the run an inline YAML config describes (its console output dropped).
void train_inline(const std::string& yaml) {
  RunConfig cfg = parse_config(yaml, "inline.yaml");
  std::ostringstream console;
  Run(cfg, console).train();
}

// One run of 200 steps of a small LLaMA-style model, baseline and head-wise RMSNorm side by side,
// on `device` with run.precision = `precision`; returns the train losses per variant.
std::map<std::string, std::vector<double>> run_losses(const fs::path& dir, const char* device,
                                                      const char* precision) {
  const std::string name = std::string(device) + "_" + precision;
  std::ostringstream y;
  y << "run: {name: " << name << ", out_dir: " << dir.string() << ", device: " << device
    << ", precision: " << precision << "}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 64, block_size: 32}\n"
    << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
    << "train: {steps: 200, batch_size: 8, eval_every: 100, eval_batches: 1, sample_tokens: 0}\n"
    << "variants:\n  - {name: base, set: {model.attn_output_norm: none}}\n"
    << "  - {name: headwise, set: {model.attn_output_norm: headwise_rmsnorm}}\n";
  train_inline(y.str());
  std::map<std::string, std::vector<double>> losses;
  for (const char* v : {"base", "headwise"}) {
    std::ifstream in(dir / name / v / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const size_t p = line.find("\"loss\":");
      if (line.compare(p + 7, 4, "null") != 0) losses[v].push_back(std::stod(line.substr(p + 7)));
    }
  }
  return losses;
}

TEST_CASE("cuda: GPU runs follow the CPU loss curve (fp32 closely, bf16 within tolerance)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const fs::path dir = test::fresh_dir("cuda_run");
  const std::vector<int32_t> tokens = test::letter_tokens(1, 1, 40000, 26, 2);
  test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 4000});
  auto cpu = run_losses(dir, "cpu", "fp32");
  auto fp32 = run_losses(dir, "cuda", "fp32");
  auto bf16 = run_losses(dir, "cuda", "bf16");
  for (const char* v : {"base", "headwise"}) {
    const auto& a = cpu[v];
    REQUIRE(a.size() == 200);
    REQUIRE(fp32[v].size() == a.size());
    REQUIRE(bf16[v].size() == a.size());
    double mean_cpu = 0, mean_bf16 = 0;  // over the last 20 steps
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(v << " step " << i << " cpu " << a[i] << " cuda fp32 " << fp32[v][i] << " bf16 "
             << bf16[v][i]);
      // fp32: the same math up to summation order.
      REQUIRE(std::fabs(a[i] - fp32[v][i]) <= 2e-3 * std::fabs(a[i]));
      // bf16 operands (8 bits of mantissa) in the matmuls and attention: per-step losses within
      // 3%, the curve's tail within 1.5%.
      REQUIRE(std::fabs(a[i] - bf16[v][i]) <= 3e-2 * std::fabs(a[i]));
      if (i >= a.size() - 20) {
        mean_cpu += a[i] / 20;
        mean_bf16 += bf16[v][i] / 20;
      }
    }
    REQUIRE(std::fabs(mean_cpu - mean_bf16) <= 1.5e-2 * mean_cpu);
    REQUIRE(bf16[v].back() < bf16[v].front() - 0.5);  // and it learns
  }
  fs::remove_all(dir);
}

TEST_CASE("cuda: sink metrics computed on the GPU match the CPU's", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  struct Case {
    AttnOutputNorm norm;
    AttentionKind attention;  // sigmoid: the row shares, from attention_row_means
    bool head_norm_statistics = false;  // var_pos from the head-wise norm's own statistics
    bool order_statistics = true;  // metrics.order_statistics (false: the residual's rows from
                                   // a plain row_statistics pass, no order statistics)
    bool sigmoid_row_sums = false;  // sigmoid's row sums from the forward (run.sigmoid_row_sums)
  };
  for (const Case& k : {Case{AttnOutputNorm::None, AttentionKind::Softmax},
                        Case{AttnOutputNorm::HeadwiseRmsNorm, AttentionKind::Softmax},
                        Case{AttnOutputNorm::HeadwiseRmsNorm, AttentionKind::Softmax, true},
                        Case{AttnOutputNorm::None, AttentionKind::Sigmoid},
                        Case{AttnOutputNorm::None, AttentionKind::Sigmoid, false, true, true},
                        Case{AttnOutputNorm::HeadwiseRmsNorm, AttentionKind::Softmax, false,
                             false}}) {
    const ops::HeadNormStatisticsGuard from_norm(k.head_norm_statistics);
    const ops::SigmoidRowSumsGuard row_sums(k.sigmoid_row_sums);
    const AttnOutputNorm norm = k.norm;
    ModelSection cfg = test::tiny_model(Arch::Llama, norm);
    cfg.attention = k.attention;
    cfg.n_embd = 64;
    cfg.block_size = 37;
    cfg.vocab_size = 50;
    GPT cpu_model(cfg, 7, DType::F32, Device::cpu());
    GPT gpu_model(cfg, 7, DType::F32, Device::cuda());
    std::vector<int32_t> ids;
    for (int i = 0; i < 3 * 37; ++i) ids.push_back(philox4x32_10(2, 2, i).v[0] % 50);
    Tensor cpu_ids = Tensor::from_ints(ids, {3, 37});
    PrecisionGuard exact(Precision::Exact);
    autograd::NoGradGuard no_grad;
    ForwardCapture cpu_cap, gpu_cap;
    cpu_model.forward(cpu_ids, Tensor(), &cpu_cap);
    gpu_model.forward(cpu_ids.to_device(Device::cuda()), Tensor(), &gpu_cap);
    REQUIRE(gpu_cap.layers[0].residual.device().is_cuda());
    const SinkMetrics a = compute_sink_metrics(cpu_cap, 0.03, true, nullptr, k.order_statistics);
    const SinkMetrics b = compute_sink_metrics(gpu_cap, 0.03, true, nullptr, k.order_statistics);
    REQUIRE(a.sink_rate == b.sink_rate);
    const auto close = [](double x, double y) { return std::fabs(x - y) <= 1e-4 * std::fabs(x) + 1e-6; };
    for (size_t l = 0; l < a.layers.size(); ++l) {
      const LayerMetrics &x = a.layers[l], &y = b.layers[l];
      INFO(choice_text(norm) << ", " << choice_text(k.attention) << " layer " << l
                             << (k.head_norm_statistics ? ", head_norm_statistics" : "")
                             << (k.order_statistics ? "" : ", no order statistics")
                             << (k.sigmoid_row_sums ? ", row sums from the forward" : ""));
      REQUIRE(gpu_cap.layers[l].row_sums.defined() == k.sigmoid_row_sums);
      for (size_t h = 0; h < x.sink_mass.size(); ++h) {
        REQUIRE(close(x.sink_mass[h], y.sink_mass[h]));
        REQUIRE(close(x.alpha0[h], y.alpha0[h]));
      }
      for (size_t t = 0; t < x.var_pos.size(); ++t) REQUIRE(close(x.var_pos[t], y.var_pos[t]));
      REQUIRE(x.var_pos_normed.size() == y.var_pos_normed.size());
      for (size_t t = 0; t < x.var_pos_normed.size(); ++t)
        REQUIRE(close(x.var_pos_normed[t], y.var_pos_normed[t]));
      REQUIRE(close(x.dim_disparity, y.dim_disparity));
      REQUIRE(x.dim_argmax == y.dim_argmax);
      REQUIRE(close(x.norm_ratio, y.norm_ratio));
      REQUIRE(x.super_neuron == y.super_neuron);
      if (k.order_statistics) {
        REQUIRE(close(x.super_ratio, y.super_ratio));
        REQUIRE(close(x.massive_median, y.massive_median));
        for (int i = 0; i < 3; ++i) REQUIRE(close(x.massive_top[i], y.massive_top[i]));
      } else {
        REQUIRE((std::isnan(y.super_ratio) && std::isnan(y.massive_median)));
        for (int i = 0; i < 3; ++i) REQUIRE(std::isnan(y.massive_top[i]));
      }
      REQUIRE(close(x.effective_rank, y.effective_rank));
    }
  }
}

TEST_CASE("cuda: sink metrics queued and fetched on the side stream during a backward equal "
          "those computed in place", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
#if defined(SINKLAB_HAVE_CUDA)
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    GPT model(metrics_model(arch, 128, 256), 7, DType::F32, Device::cuda());
    const auto [inputs, targets] = next_token_batch(8, 256, 300, 5);
    const Tensor x = inputs.to_device(Device::cuda()), y = targets.to_device(Device::cuda());
    PrecisionGuard bf16(Precision::BF16);
    ForwardCapture cap;
    const Tensor loss = model.forward(x, y, &cap).loss;
    // As the trainer does: the side stream starts at the end of the forward, the backward is
    // queued first, then the metrics; the compute stream frees (and reallocates) activations
    // while the side stream reads the captured ones.
    const cuda::SideStreamStart start = cuda::mark_side_stream_start();
    autograd::backward(loss);
    QueuedSinkMetrics queued;
    {
      cuda::SideStreamScope side(start);
      queued = queue_sink_metrics(cap);
    }
    model.params().zero_grad();
    autograd::backward(model.forward(x, y).loss);
    {  // the results' copy waits for the side stream alone, not for that backward
      cuda::SideStreamScope side(start);
      fetch_sink_metrics(queued);
    }
    cuda::join_side_stream();
    const SinkMetrics overlapped = finish_sink_metrics(std::move(queued), 0.03, false);
    const SinkMetrics in_place = compute_sink_metrics(cap, 0.03, false);
    INFO(choice_text(arch));
    REQUIRE(std::isfinite(in_place.layers.at(0).massive_median));
    test::require_same_metrics(in_place, overlapped);
  }
#endif
}

TEST_CASE("cuda: metrics.order_statistics false on a residual of 2^20 elements: the other "
          "metrics equal the full computation's, to rounding", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // B * T * C = 8 * 512 * 256 = 2^20: the full computation takes the residual's row statistics
  // from the order statistics' first pass (held rows), the cheap one from row_statistics, which
  // sums in another order. Everything not read from those rows is the same bits.
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    ModelSection cfg = metrics_model(arch, 256, 512);
    cfg.n_layer = 2;
    GPT model(cfg, 7, DType::F32, Device::cuda());
    const auto [inputs, targets] = next_token_batch(8, 512, 300, 5);
    PrecisionGuard bf16(Precision::BF16);
    autograd::NoGradGuard no_grad;
    ForwardCapture cap;
    model.forward(inputs.to_device(Device::cuda()), Tensor(), &cap);
    REQUIRE(cap.layers[0].residual.numel() == (int64_t{1} << 20));
    const SinkMetrics full = compute_sink_metrics(cap, 0.03, false);
    const SinkMetrics cheap = compute_sink_metrics(cap, 0.03, false, nullptr, false);
    const auto close = [](double x, double y) { return std::fabs(x - y) <= 1e-5 * std::fabs(x); };
    INFO(choice_text(arch));
    REQUIRE(cheap.sink_rate == full.sink_rate);
    for (size_t l = 0; l < full.layers.size(); ++l) {
      const LayerMetrics &a = full.layers[l], &b = cheap.layers[l];
      INFO("layer " << l);
      REQUIRE(std::isfinite(a.massive_median));
      REQUIRE((std::isnan(b.massive_median) && std::isnan(b.super_ratio)));
      for (int i = 0; i < 3; ++i) REQUIRE(std::isnan(b.massive_top[i]));
      REQUIRE(b.sink_mass == a.sink_mass);
      REQUIRE(b.var_pos == a.var_pos);
      REQUIRE(b.var_pos_normed == a.var_pos_normed);
      REQUIRE(b.super_neuron == a.super_neuron);
      REQUIRE(b.super_value == a.super_value);
      REQUIRE(b.dim_argmax == a.dim_argmax);
      REQUIRE(b.dim_disparity_normed == a.dim_disparity_normed);
      REQUIRE(close(a.dim_disparity, b.dim_disparity));
      REQUIRE(close(a.norm_ratio, b.norm_ratio));
    }
  }
}

TEST_CASE("cuda: folding the residual stream's gradient into the norms' backward changes no bit "
          "of any gradient, under bf16 and fp32, for GPT-2 and LLaMA (and the products take the "
          "norms' bf16 copies of it)", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (Arch arch : {Arch::Gpt2, Arch::Llama}) {
    for (Precision precision : {Precision::BF16, Precision::Exact}) {
      INFO(choice_text(arch) << (precision == Precision::BF16 ? " bf16" : " fp32"));
      ModelSection cfg = test::tiny_model(arch, AttnOutputNorm::HeadwiseRmsNorm);
      cfg.n_embd = 128;  // RMSNorm's rows of 128: the grouped-lane kernels
      cfg.block_size = 37;
      cfg.vocab_size = 50;
      const auto [x, y] = next_token_batch(3, 37, 50, 5);
      PrecisionGuard guard(precision);
      std::vector<double> grads[2];
      int64_t folds[2], copies[2];
      for (bool fold : {false, true}) {
        const bool before = ops::fold_residual_grads;
        ops::fold_residual_grads = fold;
        GPT model(cfg, 7, DType::F32, Device::cuda());
        model.params().zero_grad();
        const int64_t folded_before = ops::residual_grads_folded();
        const int64_t taken_before = ops::remembered_operands_taken();
        autograd::backward(
            model.forward(x.to_device(Device::cuda()), y.to_device(Device::cuda())).loss);
        folds[fold] = ops::residual_grads_folded() - folded_before;
        copies[fold] = ops::remembered_operands_taken() - taken_before;
        ops::fold_residual_grads = before;
        grads[fold] = model.params().flat_grads().to_doubles();
      }
      REQUIRE(folds[0] == 0);
      REQUIRE(folds[1] == 2 * cfg.n_layer);  // both norms of every block
      REQUIRE(copies[0] == 0);
      // Under bf16 every folded norm but block 0's first (whose gradient goes to the embeddings)
      // hands its bf16 copy to the branch product before it: the same bits as rounding again.
      REQUIRE(copies[1] == (precision == Precision::BF16 ? 2 * cfg.n_layer - 1 : 0));
      REQUIRE(grads[1] == grads[0]);
    }
  }
}

namespace {

// tiny_model with C = n_embd, n_head heads, T = 37 and V = 50: the model-level switch cases.
ModelSection short_model(Arch arch, AttnOutputNorm norm, int64_t n_embd, int64_t n_head) {
  ModelSection cfg = test::tiny_model(arch, norm);
  cfg.n_embd = n_embd;
  cfg.n_head = n_head;
  cfg.block_size = 37;
  cfg.vocab_size = 50;
  return cfg;
}

// A maker of cfg's model on the GPU, seed 7, f32 weights.
auto gpu_model_maker(const ModelSection& cfg) {
  return [cfg] { return GPT(cfg, 7, DType::F32, Device::cuda()); };
}

// check(cfg, ids, targets, precision) for GPT-2 and LLaMA with head-wise RMSNorm (short_model of
// n_embd and n_head), each under bf16 and fp32, on one GPU batch of 3 x 37 (seed `seed`).
template <class Check>
void for_each_arch_and_precision(int64_t n_embd, int64_t n_head, uint64_t seed, Check&& check) {
  for (Arch arch : {Arch::Gpt2, Arch::Llama})
    for (Precision precision : {Precision::BF16, Precision::Exact}) {
      INFO((arch == Arch::Gpt2 ? "gpt2" : "llama")
           << (precision == Precision::BF16 ? " bf16" : " fp32"));
      const ModelSection cfg = short_model(arch, AttnOutputNorm::HeadwiseRmsNorm, n_embd, n_head);
      const auto [x, y] = next_token_batch(3, 37, 50, seed);
      PrecisionGuard guard(precision);
      check(cfg, x.to_device(Device::cuda()), y.to_device(Device::cuda()), precision);
    }
}

}  // namespace

TEST_CASE("cuda: LLaMA's RoPE over the product's output (run.rope_in_place) changes no bit of "
          "the loss or any gradient, under bf16 and fp32", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (Precision precision : {Precision::BF16, Precision::Exact}) {
    INFO((precision == Precision::BF16 ? "bf16" : "fp32"));
    // HS 64 with 2 heads: the packed 16-byte rotation
    const ModelSection cfg = short_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm, 128, 2);
    const auto [x, y] = next_token_batch(3, 37, 50, 5);
    PrecisionGuard guard(precision);
    test::require_rope_in_place_changes_no_bit(gpu_model_maker(cfg), x.to_device(Device::cuda()),
                                               y.to_device(Device::cuda()), cfg.n_layer);
  }
}

TEST_CASE("cuda: run.release_forward_inputs writes the loss's gradient over the logits and "
          "changes no bit of the loss or any gradient, under bf16 and fp32, for GPT-2 and LLaMA",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for_each_arch_and_precision(
      128, 2, 5, [](const ModelSection& cfg, const Tensor& x, const Tensor& y, Precision) {
        test::require_release_forward_inputs_changes_no_bit(gpu_model_maker(cfg), x, y);
      });
}

// A fresh directory (test::fresh_dir) holding the letter-like train and val tokens the runs of
// attention_kinds_run read.
fs::path letter_data_dir(const std::string& name) {
  const fs::path dir = test::fresh_dir(name);
  const std::vector<int32_t> tokens = test::letter_tokens(3, 1, 40000, 26, 2);
  test::write_train_val(dir, tokens, {tokens.begin(), tokens.begin() + 4000});
  return dir;
}

// The JSONL records of one bf16 GPU run of 6 steps, softmax and sigmoid attention side by side
// (LLaMA, head size 64: the tensor-core kernels, cuDNN's for softmax where built), every sink
// metric on every step (queued on the side stream during the backward), an evaluation at step
// 3, with the run keys run_keys (e.g. "release_forward_inputs: true"); the timed and memory
// fields removed.
std::vector<std::string> attention_kinds_run(const fs::path& dir, const std::string& name,
                                             const std::string& run_keys) {
  std::ostringstream y;
  y << "run: {name: " << name << ", out_dir: " << dir.string()
    << ", device: cuda, precision: bf16, " << run_keys << "}\n"
    << "model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 128, block_size: 128}\n"
    << "data: {dir: " << dir.string() << ", tokenizer: byte}\n"
    << "train: {steps: 6, batch_size: 8, eval_every: 3, eval_batches: 1, sample_tokens: 0}\n"
    << "metrics: {every: 1}\n"
    << "variants:\n  - {name: softmax, set: {model.attention: softmax}}\n"
    << "  - {name: sigmoid, set: {model.attention: sigmoid}}\n";
  train_inline(y.str());
  std::vector<std::string> records;
  for (const char* v : {"softmax", "sigmoid"})
    for (const std::string& line : test::untimed_lines(dir / name / v / "metrics.jsonl")) {
      if (test::json_field(line, "loss") != "null") {  // a training step's record
        INFO(v << ": " << line);
        const std::string norm = test::json_field(line, "grad_norm");  // null: NaN, skipped
        const std::string rate = test::json_field(line, "sink_rate");
        REQUIRE((norm != "null" && std::isfinite(std::stod(norm))));
        REQUIRE((rate != "null" && std::stod(rate) >= 0 && std::stod(rate) <= 100));
      }
      records.push_back(line);
    }
  return records;
}

TEST_CASE("cuda: sigmoid attention's metrics steps under bf16 keep finite gradients, and "
          "run.release_forward_inputs changes no bit of them", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // The twenty-fifth session's H100 run of the 152M shape gave NaN gradient norms on sigmoid's
  // metrics steps after the first (with release on and another change): every step here is a
  // metrics step, both ways.
  const fs::path dir = letter_data_dir("cuda_release_sigmoid");
  autograd::KeepInputsGuard restore(true);  // the runs set it for the process
  const std::vector<std::string> off =
      attention_kinds_run(dir, "release_off", "release_forward_inputs: false");
  const std::vector<std::string> on =
      attention_kinds_run(dir, "release_on", "release_forward_inputs: true");
  REQUIRE(off.size() == 14);  // 6 steps and the final evaluation, two variants
  REQUIRE(on == off);
  fs::remove_all(dir);
}

TEST_CASE("cuda: sigmoid's row sums from the training forward (run.sigmoid_row_sums) change no "
          "bit of the training and give the sink metrics of attention_row_means", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const fs::path dir = letter_data_dir("cuda_sigmoid_row_sums");
  const ops::SigmoidRowSumsGuard restore(false);  // the runs set it for the process
  const std::vector<std::string> off =
      attention_kinds_run(dir, "row_sums_off", "sigmoid_row_sums: false");
  const std::vector<std::string> on =
      attention_kinds_run(dir, "row_sums_on", "sigmoid_row_sums: true");
  REQUIRE(off.size() == 14);  // 6 steps and the final evaluation, two variants
  REQUIRE(on.size() == off.size());
  for (size_t i = 0; i < off.size(); ++i) {
    INFO("off: " << off[i] << "\non:  " << on[i]);
    for (const char* field : {"loss", "grad_norm", "val_loss", "batch_hash"})
      REQUIRE(test::json_field(on[i], field) == test::json_field(off[i], field));
    // The forward's f32 sums of its tensor-core scores against attention_row_means' f32
    // products of the same bf16 q and k: the shares agree far inside the metrics' digits.
    for (const char* field : {"sink_score", "dim_disparity"}) {
      const std::string off_text = test::json_field(off[i], field);
      const std::string on_text = test::json_field(on[i], field);
      REQUIRE(off_text.empty() == on_text.empty());
      if (off_text.empty() || off_text == "null") continue;  // a record without the field
      const std::vector<double> a = test::json_numbers(off_text);
      const std::vector<double> b = test::json_numbers(on_text);
      REQUIRE(a.size() == b.size());
      for (size_t l = 0; l < a.size(); ++l)
        REQUIRE(b[l] == Approx(a[l]).epsilon(1e-4).margin(1e-7));
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("cuda: the weights' operands from one rounded copy of the flat buffer "
          "(run.flat_weight_operands) change no bit of the loss or any gradient", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // C = 256: every weight (LLaMA's packed ones too) starts a multiple of 128 elements into the
  // flat buffer, so every product takes its view (others are rounded alone)
  for_each_arch_and_precision(
      256, 4, 9,
      [](const ModelSection& cfg, const Tensor& x, const Tensor& y, Precision precision) {
        test::require_flat_weight_operands_change_no_bit(gpu_model_maker(cfg), x, y, cfg.n_layer,
                                                         precision == Precision::BF16);
      });
}

TEST_CASE("cuda: bf16 branch outputs (run.bf16_branch_outputs) under bf16: every add takes them, "
          "loss and gradients within bf16 rounding; under fp32 no bit changes", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (Arch arch : {Arch::Gpt2, Arch::Llama})
    for (AttnOutputNorm norm : {AttnOutputNorm::None, AttnOutputNorm::HeadwiseRmsNorm})
      for (Precision precision : {Precision::BF16, Precision::Exact}) {
        INFO((arch == Arch::Gpt2 ? "gpt2" : "llama")
             << (norm == AttnOutputNorm::None ? "" : " head-wise")
             << (precision == Precision::BF16 ? " bf16" : " fp32"));
        // C = 256, rows of 128 n: the norms' rows held in registers, as GPT-2's 768
        const ModelSection cfg = short_model(arch, norm, 256, 4);
        const auto [x, y] = next_token_batch(3, 37, 50, 9);
        PrecisionGuard guard(precision);
        test::require_bf16_branch_outputs(gpu_model_maker(cfg), x.to_device(Device::cuda()),
                                          y.to_device(Device::cuda()), cfg.n_layer,
                                          precision == Precision::BF16);
      }
}

TEST_CASE("cuda: GPT-2 under bf16 (bf16 FFN hidden) agrees with the CPU: loss, gradients, metrics",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  ModelSection cfg = test::tiny_model(Arch::Gpt2, AttnOutputNorm::None);
  cfg.n_embd = 64;
  cfg.block_size = 37;
  cfg.vocab_size = 50;
  GPT cpu_model(cfg, 7, DType::F32, Device::cpu());
  GPT gpu_model(cfg, 7, DType::F32, Device::cuda());
  const auto [x, y] = next_token_batch(3, 37, 50, 3);
  PrecisionGuard bf16(Precision::BF16);
  const ForwardCapture cpu_cap = test::capture_of(cpu_model, x);
  const ForwardCapture gpu_cap = test::capture_of(gpu_model, x.to_device(Device::cuda()));
  REQUIRE(gpu_cap.layers[0].ffn_hidden.dtype() == DType::BF16);
  const SinkMetrics a = compute_sink_metrics(cpu_cap, 0.03, false);
  const SinkMetrics b = compute_sink_metrics(gpu_cap, 0.03, false);
  // bf16 operands and a bf16 hidden: a few parts in a thousand per value, 3% on the ratios.
  const auto near = [](double u, double v) {
    return std::fabs(u - v) <= 3e-2 * std::fabs(u) + 1e-4;
  };
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerMetrics &p = a.layers[l], &q = b.layers[l];
    INFO("layer " << l << " super " << p.super_value << " / " << q.super_value << " ratio "
                  << p.super_ratio << " / " << q.super_ratio);
    REQUIRE(near(p.super_value, q.super_value));
    REQUIRE(near(p.super_ratio, q.super_ratio));
    REQUIRE(near(p.massive_median, q.massive_median));
    for (int i = 0; i < 3; ++i) REQUIRE(near(p.massive_top[i], q.massive_top[i]));
    REQUIRE(near(p.dim_disparity, q.dim_disparity));
    for (size_t h = 0; h < p.sink_mass.size(); ++h) REQUIRE(near(p.sink_mass[h], q.sink_mass[h]));
  }
  // One training step's loss and gradients.
  const Tensor cpu_loss = cpu_model.forward(x, y).loss;
  autograd::backward(cpu_loss);
  const Tensor gpu_loss =
      gpu_model.forward(x.to_device(Device::cuda()), y.to_device(Device::cuda())).loss;
  autograd::backward(gpu_loss);
  REQUIRE(std::fabs(cpu_loss.item() - gpu_loss.item()) <= 1e-2 * std::fabs(cpu_loss.item()));
  const std::vector<double> g_cpu = cpu_model.params().flat_grads().to_doubles();
  const std::vector<double> g_gpu = gpu_model.params().flat_grads().to_doubles();
  REQUIRE(g_cpu.size() == g_gpu.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g_cpu.size(); ++i) {
    diff += (g_cpu[i] - g_gpu[i]) * (g_cpu[i] - g_gpu[i]);
    norm += g_cpu[i] * g_cpu[i];
  }
  INFO("gradient relative error " << std::sqrt(diff / norm));
  REQUIRE(norm > 0);
  REQUIRE(std::sqrt(diff / norm) <= 5e-2);
}

TEST_CASE("cuda: interventions before and after head-wise RMSNorm match the CPU in f32; after "
          "the norm, plain scaling multiplies the bf16 output exactly",
          "[cuda][probe]") {
  SINKLAB_REQUIRE_CUDA();
  ModelSection cfg = test::tiny_model(Arch::Llama, AttnOutputNorm::HeadwiseRmsNorm);
  cfg.n_embd = 64;
  cfg.block_size = 37;
  cfg.vocab_size = 50;
  cfg.amplify_position = 5;
  cfg.amplify_lambda = 7.0;
  cfg.amplify_layers = {0};
  std::vector<int32_t> ids;
  for (int i = 0; i < 3 * 37; ++i) ids.push_back(philox4x32_10(2, 3, i).v[0] % 50);
  const Tensor cpu_ids = Tensor::from_ints(ids, {3, 37}), gpu_ids = cpu_ids.to_device(Device::cuda());
  autograd::NoGradGuard no_grad;
  for (AmplifySite site : {AmplifySite::BeforeNorm, AmplifySite::AfterNorm})
    for (AmplifyMode mode : {AmplifyMode::Plain, AmplifyMode::Centered}) {
      INFO(choice_text(site) << ", " << choice_text(mode));
      cfg.amplify_site = site;
      cfg.amplify_mode = mode;
      PrecisionGuard exact(Precision::Exact);
      ForwardCapture cpu_cap, gpu_cap;
      GPT(cfg, 7, DType::F32, Device::cpu()).forward(cpu_ids, Tensor(), &cpu_cap);
      GPT(cfg, 7, DType::F32, Device::cuda()).forward(gpu_ids, Tensor(), &gpu_cap);
      const std::vector<double> a = cpu_cap.final_residual.to_doubles(),
                                b = gpu_cap.final_residual.to_doubles();
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) REQUIRE(b[i] == Approx(a[i]).epsilon(1e-4).margin(1e-5));
    }
  // bf16: the normed output stays as the norm wrote it but at k, where it is 7 times that.
  PrecisionGuard bf16(Precision::BF16);
  cfg.amplify_mode = AmplifyMode::Plain;
  cfg.amplify_site = AmplifySite::AfterNorm;
  ModelSection none = cfg;
  none.amplify_position = -1;
  ForwardCapture plain, scaled;
  GPT(none, 7, DType::F32, Device::cuda()).forward(gpu_ids, Tensor(), &plain);
  GPT(cfg, 7, DType::F32, Device::cuda()).forward(gpu_ids, Tensor(), &scaled);
  REQUIRE(plain.layers[0].attn_out_normed.dtype() == DType::BF16);
  const std::vector<double> x = plain.layers[0].attn_out_normed.to_doubles(),
                            y = scaled.layers[0].attn_out_normed.to_doubles();  // (3, 37, NH, HS)
  const size_t row = static_cast<size_t>(cfg.n_embd);
  REQUIRE(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == ((i / row) % 37 == 5 ? 7.0 * x[i] : x[i]));
  REQUIRE(scaled.final_residual.to_doubles() != plain.final_residual.to_doubles());
}
