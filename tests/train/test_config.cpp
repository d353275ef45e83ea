// The run configuration: defaults, a full file, every class of error (unknown key, wrong type,
// bad enumeration, impossible combination, missing file, malformed YAML, bad variants and
// overrides), overrides and variants, and the resolved YAML reading back to the same config.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "core/error.h"
#include "tests/catch.h"
#include "train/config.h"
#include "tests/train/train_test_util.h"

using namespace sinklab;
using sinklab::test::contains;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

// A fresh folder under the system temp dir, removed with everything in it at scope exit.

struct Caught {
  std::string message, hint;
};

// Runs f, which must throw exactly E (another sinklab error fails the test with its text).
template <class E>
Caught error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return {e.message(), e.hint()};
  }
  FAIL("expected an exception, none was thrown");
  return {};
}

Caught config_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return error_of<ConfigError>([&] { parse_config(yaml, "configs/x.yaml", overrides); });
}

#define REQUIRE_MENTIONS(caught, ...)                                      \
  do {                                                                     \
    INFO("message: " << (caught).message << "\nhint: " << (caught).hint); \
    for (const char* part : {__VA_ARGS__}) {                               \
      INFO("expected to find: " << part);                                  \
      REQUIRE(contains((caught).message, part));                           \
    }                                                                      \
  } while (0)

// Field-by-field equality, written out independently of config.cpp's key table.
void require_same(const RunConfig& a, const RunConfig& b) {
  REQUIRE(a.run.name == b.run.name);
  REQUIRE(a.run.out_dir == b.run.out_dir);
  REQUIRE(a.run.device == b.run.device);
  REQUIRE(a.run.seed == b.run.seed);
  REQUIRE(a.run.precision == b.run.precision);
  REQUIRE(a.run.attention_kernels == b.run.attention_kernels);
  REQUIRE(a.run.profile == b.run.profile);
  REQUIRE(a.run.bucket_mib == b.run.bucket_mib);
  REQUIRE(a.run.collective_timeout_s == b.run.collective_timeout_s);
  REQUIRE(a.run.bf16_gemm == b.run.bf16_gemm);
  REQUIRE(a.run.metrics_priority == b.run.metrics_priority);
  REQUIRE(a.run.cpu_gemm == b.run.cpu_gemm);
  REQUIRE(a.run.gemm_epilogues == b.run.gemm_epilogues);
  REQUIRE(a.run.gemm_search == b.run.gemm_search);
  REQUIRE(a.run.bias_grad_columns == b.run.bias_grad_columns);
  REQUIRE(a.run.fused_cross_entropy == b.run.fused_cross_entropy);
  REQUIRE(a.run.fold_residual_grads == b.run.fold_residual_grads);
  REQUIRE(a.run.rope_in_place == b.run.rope_in_place);
  REQUIRE(a.run.bf16_branch_outputs == b.run.bf16_branch_outputs);
  REQUIRE(a.run.fused_norm_param_grads == b.run.fused_norm_param_grads);
  REQUIRE(a.run.flat_weight_operands == b.run.flat_weight_operands);
  REQUIRE(a.run.head_norm_statistics == b.run.head_norm_statistics);
  REQUIRE(a.run.sigmoid_row_sums == b.run.sigmoid_row_sums);
  REQUIRE(a.run.one_pass_order_statistics == b.run.one_pass_order_statistics);
  REQUIRE(a.run.metrics_exchange_on_side == b.run.metrics_exchange_on_side);
  REQUIRE(a.run.cuda_graph == b.run.cuda_graph);
  REQUIRE(a.run.deterministic == b.run.deterministic);
  const ModelSection &m = a.model, &n = b.model;
  REQUIRE(m.arch == n.arch);
  REQUIRE(m.n_layer == n.n_layer);
  REQUIRE(m.n_head == n.n_head);
  REQUIRE(m.n_embd == n.n_embd);
  REQUIRE(m.ffn_hidden == n.ffn_hidden);
  REQUIRE(m.block_size == n.block_size);
  REQUIRE(m.vocab_size == n.vocab_size);
  REQUIRE(m.vocab_multiple == n.vocab_multiple);
  REQUIRE(m.tie_embeddings == n.tie_embeddings);
  REQUIRE(m.attn_output_norm == n.attn_output_norm);
  REQUIRE(m.attention == n.attention);
  REQUIRE(m.gamma_init == n.gamma_init);
  REQUIRE(m.gamma_init_scale == n.gamma_init_scale);
  REQUIRE(m.gamma_shared == n.gamma_shared);
  REQUIRE(m.gamma_weight_decay == n.gamma_weight_decay);
  REQUIRE(m.norm_eps == n.norm_eps);
  REQUIRE(m.rope_theta == n.rope_theta);
  REQUIRE(m.isolate_positions == n.isolate_positions);
  REQUIRE(m.init_std == n.init_std);
  REQUIRE(a.data.dir == b.data.dir);
  REQUIRE(a.data.train_pattern == b.data.train_pattern);
  REQUIRE(a.data.val_pattern == b.data.val_pattern);
  REQUIRE(a.data.tokenizer == b.data.tokenizer);
  REQUIRE(a.prepare.inputs == b.prepare.inputs);
  REQUIRE(a.prepare.tokenizer == b.prepare.tokenizer);
  REQUIRE(a.prepare.vocab_size == b.prepare.vocab_size);
  REQUIRE(a.prepare.val_fraction == b.prepare.val_fraction);
  REQUIRE(a.prepare.shard_tokens == b.prepare.shard_tokens);
  const TrainSection &t = a.train, &u = b.train;
  REQUIRE(t.steps == u.steps);
  REQUIRE(t.batch_size == u.batch_size);
  REQUIRE(t.tokens_per_step == u.tokens_per_step);
  REQUIRE(t.log_every == u.log_every);
  REQUIRE(t.eval_every == u.eval_every);
  REQUIRE(t.eval_batches == u.eval_batches);
  REQUIRE(t.sample_every == u.sample_every);
  REQUIRE(t.sample_tokens == u.sample_tokens);
  REQUIRE(t.sample_temperature == u.sample_temperature);
  const OptimSection &o = a.optim, &p = b.optim;
  REQUIRE(o.lr == p.lr);
  REQUIRE(o.min_lr == p.min_lr);
  REQUIRE(o.warmup_steps == p.warmup_steps);
  REQUIRE(o.decay_steps == p.decay_steps);
  REQUIRE(o.beta1 == p.beta1);
  REQUIRE(o.beta2 == p.beta2);
  REQUIRE(o.eps == p.eps);
  REQUIRE(o.weight_decay == p.weight_decay);
  REQUIRE(o.decay_embeddings == p.decay_embeddings);
  REQUIRE(o.grad_clip == p.grad_clip);
  REQUIRE(a.metrics.every == b.metrics.every);
  REQUIRE(a.metrics.effective_rank_every == b.metrics.effective_rank_every);
  REQUIRE(a.metrics.sink_threshold == b.metrics.sink_threshold);
  REQUIRE(a.metrics.order_statistics == b.metrics.order_statistics);
  REQUIRE(a.metrics.jsonl == b.metrics.jsonl);
  REQUIRE(a.metrics.hdf5 == b.metrics.hdf5);
  REQUIRE(a.metrics.tensorboard == b.metrics.tensorboard);
  REQUIRE(a.checkpoint.every == b.checkpoint.every);
  REQUIRE(a.checkpoint.keep_last == b.checkpoint.keep_last);
  REQUIRE(a.checkpoint.keep_every == b.checkpoint.keep_every);
  REQUIRE(a.variants.size() == b.variants.size());
  for (size_t i = 0; i < a.variants.size(); ++i) {
    REQUIRE(a.variants[i].name == b.variants[i].name);
    REQUIRE(a.variants[i].overrides == b.variants[i].overrides);
  }
}

// Every key of config.h, none at its default.
const char* kFullYaml = R"(# every key, none at its default
run:
  name: full_run
  out_dir: /tmp/sinklab_runs
  device: cuda:1
  precision: bf16
  attention_kernels: own
  seed: 18446744073709551615   # the largest uint64
  profile: true
  bucket_mib: 0.02
  collective_timeout_s: 30
  bf16_gemm: fast
  metrics_priority: equal
  cpu_gemm: reference
model:
  arch: llama
  n_layer: 6
  n_head: 6
  n_embd: 384
  ffn_hidden: 1024
  block_size: 256
  vocab_size: 50304
  vocab_multiple: 128
  tie_embeddings: false
  attn_output_norm: headwise_rmsnorm
  attention: sigmoid
  gamma_init: ones
  gamma_init_scale: 0.25
  gamma_shared: true
  gamma_weight_decay: no
  norm_eps: 1e-6
  rope_theta: 500000
  isolate_positions: [0, 5, 255]
  init_std: 0.01
data:
  dir: data/sotu
  train_pattern: "tr_*.bin"
  val_pattern: va_*.bin
  tokenizer: byte
prepare:
  inputs:
    - data/raw/moby_dick.txt
    - data/raw/sotu.txt
  tokenizer: byte
  vocab_size: 1024
  val_fraction: 0.1
  shard_tokens: 1000000
train:
  steps: 5000
  batch_size: 16
  tokens_per_step: 16384   # 4 micro-batches of 16 x 256
  log_every: 10
  eval_every: 250
  eval_batches: 20
  sample_every: 1000
  sample_tokens: 64
  sample_temperature: 0.8
optim:
  lr: 6e-4
  min_lr: 6.0e-5
  warmup_steps: 200
  decay_steps: 4000
  beta1: 0.85
  beta2: 0.99
  eps: 1e-10
  weight_decay: 0.05
  decay_embeddings: false
  grad_clip: 0.5
metrics:
  every: 10
  effective_rank_every: 100
  sink_threshold: 0.5
  order_statistics: false
  jsonl: false
  hdf5: off
  tensorboard: no
checkpoint:
  every: 500
  keep_last: 2
  keep_every: 1000
variants:
  - name: baseline
    set: {model.attn_output_norm: none}
  - name: iso-3.7
    set: ["model.isolate_positions=[3,7]", "optim.lr = 1e-3"]
  - name: nested
    set:
      model: {gamma_init: first_token_std, n_layer: 2}
  - name: plain
)";

void require_full(const RunConfig& c) {
  REQUIRE(c.run.name == "full_run");
  REQUIRE(c.run.out_dir == "/tmp/sinklab_runs");
  REQUIRE(c.run.device == "cuda:1");
  REQUIRE(c.run.seed == std::numeric_limits<uint64_t>::max());
  REQUIRE(c.run.precision == PrecisionSetting::BF16);
  REQUIRE(c.run.attention_kernels == ops::AttentionKernels::Own);
  REQUIRE(c.run.profile);
  REQUIRE(c.run.bucket_mib == 0.02);
  REQUIRE(c.run.collective_timeout_s == 30.0);
  REQUIRE(c.run.bf16_gemm == ops::Bf16Gemm::Fast);
  REQUIRE(c.run.metrics_priority == SidePriority::Equal);
  REQUIRE(c.run.cpu_gemm == CpuGemmSetting::Reference);
  REQUIRE(c.model.arch == Arch::Llama);
  REQUIRE(c.model.n_layer == 6);
  REQUIRE(c.model.n_head == 6);
  REQUIRE(c.model.n_embd == 384);
  REQUIRE(c.model.ffn_hidden == 1024);
  REQUIRE(c.model.block_size == 256);
  REQUIRE(c.model.vocab_size == 50304);
  REQUIRE(c.model.vocab_multiple == 128);
  REQUIRE_FALSE(c.model.tie_embeddings);
  REQUIRE(c.model.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm);
  REQUIRE(c.model.attention == AttentionKind::Sigmoid);
  REQUIRE(c.model.gamma_init == GammaInit::Ones);
  REQUIRE(c.model.gamma_init_scale == 0.25);
  REQUIRE(c.model.gamma_shared);
  REQUIRE_FALSE(c.model.gamma_weight_decay);
  REQUIRE(c.model.norm_eps == 1e-6);
  REQUIRE(c.model.rope_theta == 500000.0);
  REQUIRE(c.model.isolate_positions == std::vector<int64_t>{0, 5, 255});
  REQUIRE(c.model.init_std == 0.01);
  REQUIRE(c.data.dir == "data/sotu");
  REQUIRE(c.data.train_pattern == "tr_*.bin");
  REQUIRE(c.data.val_pattern == "va_*.bin");
  REQUIRE(c.data.tokenizer == "byte");
  REQUIRE(c.prepare.inputs ==
          std::vector<std::string>{"data/raw/moby_dick.txt", "data/raw/sotu.txt"});
  REQUIRE(c.prepare.tokenizer == "byte");
  REQUIRE(c.prepare.vocab_size == 1024);
  REQUIRE(c.prepare.val_fraction == 0.1);
  REQUIRE(c.prepare.shard_tokens == 1000000);
  REQUIRE(c.train.steps == 5000);
  REQUIRE(c.train.batch_size == 16);
  REQUIRE(c.train.tokens_per_step == 16384);
  REQUIRE(c.train.log_every == 10);
  REQUIRE(c.train.eval_every == 250);
  REQUIRE(c.train.eval_batches == 20);
  REQUIRE(c.train.sample_every == 1000);
  REQUIRE(c.train.sample_tokens == 64);
  REQUIRE(c.train.sample_temperature == 0.8);
  REQUIRE(c.optim.lr == 6e-4);
  REQUIRE(c.optim.min_lr == 6e-5);
  REQUIRE(c.optim.warmup_steps == 200);
  REQUIRE(c.optim.decay_steps == 4000);
  REQUIRE(c.optim.beta1 == 0.85);
  REQUIRE(c.optim.beta2 == 0.99);
  REQUIRE(c.optim.eps == 1e-10);
  REQUIRE(c.optim.weight_decay == 0.05);
  REQUIRE_FALSE(c.optim.decay_embeddings);
  REQUIRE(c.optim.grad_clip == 0.5);
  REQUIRE(c.metrics.every == 10);
  REQUIRE(c.metrics.effective_rank_every == 100);
  REQUIRE(c.metrics.sink_threshold == 0.5);
  REQUIRE_FALSE(c.metrics.order_statistics);
  REQUIRE_FALSE(c.metrics.jsonl);
  REQUIRE_FALSE(c.metrics.hdf5);
  REQUIRE_FALSE(c.metrics.tensorboard);
  REQUIRE(c.checkpoint.every == 500);
  REQUIRE(c.checkpoint.keep_last == 2);
  REQUIRE(c.checkpoint.keep_every == 1000);
  REQUIRE(c.variants.size() == 4);
  REQUIRE(c.variants[0].name == "baseline");
  REQUIRE(c.variants[0].overrides == std::vector<std::string>{"model.attn_output_norm=none"});
  REQUIRE(c.variants[1].name == "iso-3.7");
  // Overrides are kept canonical: the key's own formatting of the value.
  REQUIRE(c.variants[1].overrides ==
          std::vector<std::string>{"model.isolate_positions=[3, 7]", "optim.lr=0.001"});
  REQUIRE(c.variants[2].name == "nested");
  REQUIRE(c.variants[2].overrides ==
          std::vector<std::string>{"model.gamma_init=first_token_std", "model.n_layer=2"});
  REQUIRE(c.variants[3].name == "plain");
  REQUIRE(c.variants[3].overrides.empty());
}

}  // namespace

TEST_CASE("config: defaults are the header's and an empty file gives them", "[config]") {
  const RunConfig defaults;
  REQUIRE(defaults.model.arch == Arch::Gpt2);
  REQUIRE(defaults.train.tokens_per_step == 0);
  REQUIRE(defaults.metrics.order_statistics);  // every sink metric, unless asked otherwise
  REQUIRE(defaults.variants.empty());
  REQUIRE_NOTHROW(validate(defaults));
  for (const char* text : {"", "# only a comment\n", "run:\nmodel:\n", "variants: []\n"}) {
    INFO(text);
    const RunConfig c = parse_config(text, "empty.yaml");
    REQUIRE(c.source_file == "empty.yaml");
    RunConfig expected;
    expected.source_file = "empty.yaml";
    require_same(c, expected);
  }
}

TEST_CASE("config: a file with every key parses", "[config]") {
  const RunConfig c = parse_config(kFullYaml, "full.yaml");
  require_full(c);
  REQUIRE(c.source_file == "full.yaml");
  // Variants: applied on top of the base, list cleared, validated.
  const RunConfig base = apply_variant(c, c.variants[0]);
  REQUIRE(base.model.attn_output_norm == AttnOutputNorm::None);
  REQUIRE(base.model.attention == AttentionKind::Sigmoid);  // the rest is the base's
  REQUIRE(base.variants.empty());
  REQUIRE(base.source_file == "full.yaml");
  const RunConfig iso = apply_variant(c, c.variants[1]);
  REQUIRE(iso.model.isolate_positions == std::vector<int64_t>{3, 7});
  REQUIRE(iso.optim.lr == 1e-3);
  REQUIRE(iso.model.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm);
  const RunConfig nested = apply_variant(c, c.variants[2]);
  REQUIRE(nested.model.gamma_init == GammaInit::FirstTokenStd);
  REQUIRE(nested.model.n_layer == 2);
  RunConfig plain = apply_variant(c, c.variants[3]);
  plain.variants = c.variants;
  require_same(plain, c);
}

TEST_CASE("config: unknown sections and keys name the key and the file, with a hint",
          "[config]") {
  {
    const Caught e = config_error("model:\n  n_layrs: 3\n");
    REQUIRE_MENTIONS(e, "unknown key 'model.n_layrs'", "configs/x.yaml", "line 2");
    REQUIRE(contains(e.hint, "did you mean 'model.n_layer'"));
    REQUIRE(contains(e.hint, "n_embd"));  // the valid keys of the section
  }
  {  // a key of another section
    const Caught e = config_error("model: {steps: 10}\n");
    REQUIRE_MENTIONS(e, "model.steps", "configs/x.yaml");
    REQUIRE(contains(e.hint, "train.steps"));
  }
  {  // nothing close: still lists the valid keys
    const Caught e = config_error("optim: {momentum: 0.9}\n");
    REQUIRE_MENTIONS(e, "optim.momentum", "configs/x.yaml");
    REQUIRE(contains(e.hint, "valid keys in optim: lr, min_lr"));
  }
  {
    const Caught e = config_error("modle:\n  n_layer: 3\n");
    REQUIRE_MENTIONS(e, "unknown section 'modle'", "configs/x.yaml");
    REQUIRE(contains(e.hint, "did you mean 'model'"));
  }
  {  // a key written at the top level
    const Caught e = config_error("n_layer: 3\n");
    REQUIRE_MENTIONS(e, "n_layer", "configs/x.yaml");
    REQUIRE(contains(e.hint, "model.n_layer"));
  }
  REQUIRE_MENTIONS(config_error("model: {n_layer: 2, n_layer: 3}\n"), "model.n_layer", "twice",
                   "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("model: {n_layer: 2}\nmodel: {n_head: 2}\n"), "model", "twice");
  REQUIRE_MENTIONS(config_error("- model\n- run\n"), "top level", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("model: 3\n"), "section 'model'", "configs/x.yaml");
}

TEST_CASE("config: wrong types name the key, the value, the type and the file", "[config]") {
  struct Case {
    const char* yaml;
    const char* key;
    const char* value;
    const char* type;
  };
  const Case cases[] = {
      {"model: {n_layer: four}", "model.n_layer", "'four'", "an integer"},
      {"model: {n_layer: 3.5}", "model.n_layer", "'3.5'", "an integer"},
      {"model: {n_layer: 1e3}", "model.n_layer", "'1e3'", "an integer"},
      {"model: {n_layer: 99999999999999999999}", "model.n_layer", "'99999999999999999999'",
       "an integer"},
      {"model: {n_layer: {a: 1}}", "model.n_layer", "a map", "an integer"},
      {"model: {n_layer: [1]}", "model.n_layer", "a list", "an integer"},
      {"model: {n_layer: }", "model.n_layer", "nothing", "an integer"},
      {"metrics: {jsonl: yes please}", "metrics.jsonl", "'yes please'", "true or false"},
      {"metrics: {jsonl: 1}", "metrics.jsonl", "'1'", "true or false"},
      {"optim: {lr: fast}", "optim.lr", "'fast'", "a number"},
      {"optim: {lr: .nan}", "optim.lr", "'.nan'", "a number"},
      {"run: {seed: -1}", "run.seed", "'-1'", "a non-negative integer"},
      {"run: {profile: sometimes}", "run.profile", "'sometimes'", "true or false"},
      {"run: {bucket_mib: big}", "run.bucket_mib", "'big'", "a number"},
      {"run: {collective_timeout_s: [1]}", "run.collective_timeout_s", "a list", "a number"},
      {"run: {name: {a: b}}", "run.name", "a map", "a string"},
      {"model: {isolate_positions: 3}", "model.isolate_positions", "'3'", "a list of integers"},
      {"model: {isolate_positions: [1, x]}", "model.isolate_positions[1]", "'x'",
       "a list of integers"},
      {"prepare: {inputs: a.txt}", "prepare.inputs", "'a.txt'", "a list of strings"},
      {"prepare: {inputs: [[a.txt]]}", "prepare.inputs[0]", "a list", "a list of strings"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    const Caught e = config_error(c.yaml);
    REQUIRE_MENTIONS(e, c.key, c.value, c.type, "configs/x.yaml");
  }
  // What YAML reads as the right type is accepted.
  const RunConfig ok = parse_config(
      "model: {n_layer: +3, norm_eps: 1, tie_embeddings: False}\nrun: {name: 123}\n", "ok.yaml");
  REQUIRE(ok.model.n_layer == 3);
  REQUIRE(ok.model.norm_eps == 1.0);
  REQUIRE_FALSE(ok.model.tie_embeddings);
  REQUIRE(ok.run.name == "123");
}

TEST_CASE("config: enumerations and impossible combinations are refused", "[config]") {
  {
    const Caught e = config_error("model: {arch: gpt3}");
    REQUIRE_MENTIONS(e, "model.arch", "'gpt3'", "configs/x.yaml", "gpt2, llama");
    REQUIRE(contains(e.hint, "did you mean 'gpt2'"));
  }
  REQUIRE_MENTIONS(config_error("model: {attn_output_norm: headwise}"), "model.attn_output_norm",
                   "configs/x.yaml", "none, headwise_rmsnorm");
  REQUIRE_MENTIONS(config_error("model: {attention: linear}"), "model.attention",
                   "softmax, sigmoid");
  REQUIRE_MENTIONS(config_error("model: {gamma_init: zeros}"), "model.gamma_init",
                   "first_token_std, ones");
  REQUIRE_MENTIONS(config_error("prepare: {tokenizer: wordpiece}"), "prepare.tokenizer",
                   "bpe, byte, gpt2, hf:<path>");
  // The tokenizers by name: GPT-2's, and a Hugging Face tokenizer.json (hf:<path>).
  REQUIRE(contains(config_error("prepare: {tokenizer: gpt3}").hint, "did you mean 'gpt2'"));
  REQUIRE_MENTIONS(config_error("prepare: {tokenizer: 'hf:'}"), "prepare.tokenizer", "'hf:'");
  REQUIRE_MENTIONS(config_error("data: {tokenizer: 'hf:'}"), "data.tokenizer", "without a path");
  for (const char* name : {"gpt2", "hf:tokenizer.json", "hf:models/llama3/"}) {
    INFO(name);
    REQUIRE(parse_config(std::string("prepare: {tokenizer: '") + name + "'}\ndata: {tokenizer: '" +
                             name + "'}",
                         "t.yaml")
                .prepare.tokenizer == name);
  }
  for (const char* device : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"})
    REQUIRE_MENTIONS(config_error(std::string("run: {device: '") + device + "'}"), "run.device",
                     "configs/x.yaml");
  for (const char* device : {"cpu", "cuda", "cuda:0", "cuda:12"})
    REQUIRE_NOTHROW(parse_config(std::string("run: {device: '") + device + "'}", "d.yaml"));

  {
    const Caught e = config_error("model: {n_embd: 130, n_head: 4}");
    REQUIRE_MENTIONS(e, "model.n_embd", "model.n_head", "130", "configs/x.yaml");
  }
  // llama: RoPE needs an even head size (gpt2 does not).
  REQUIRE_MENTIONS(config_error("model: {arch: llama, n_embd: 12, n_head: 4}"), "model.n_embd",
                   "model.n_head", "RoPE", "configs/x.yaml");
  REQUIRE_NOTHROW(parse_config("model: {arch: gpt2, n_embd: 12, n_head: 4}", "g.yaml"));
  {
    const Caught e = config_error("train: {tokens_per_step: 1000, batch_size: 8}");
    REQUIRE_MENTIONS(e, "train.tokens_per_step", "1000", "1024", "configs/x.yaml");
    REQUIRE(contains(e.hint, "1024"));
  }
  REQUIRE_NOTHROW(parse_config("train: {tokens_per_step: 4096}", "t.yaml"));
  REQUIRE_MENTIONS(config_error("train: {tokens_per_step: -1024}"), "train.tokens_per_step");

  // Positive sizes and bounds.
  REQUIRE_MENTIONS(config_error("model: {n_layer: 0}"), "model.n_layer", "positive",
                   "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("model: {n_head: -2}"), "model.n_head", "positive");
  REQUIRE_MENTIONS(config_error("train: {batch_size: 0}"), "train.batch_size");
  REQUIRE_MENTIONS(config_error("train: {steps: 0}"), "train.steps");
  REQUIRE_MENTIONS(config_error("metrics: {every: -1}"), "metrics.every", "configs/x.yaml");
  REQUIRE_NOTHROW(parse_config("metrics: {every: 0}", "m.yaml"));
  REQUIRE_MENTIONS(config_error("optim: {lr: 1e-4, min_lr: 1e-3}"), "optim.min_lr", "optim.lr");
  // A warm-up longer than a short run is allowed (the lr just never peaks).
  REQUIRE_NOTHROW(parse_config("optim: {warmup_steps: 300}\ntrain: {steps: 200}", "w.yaml"));
  REQUIRE_NOTHROW(
      parse_config("optim: {warmup_steps: 300, decay_steps: 1000}\ntrain: {steps: 200}", "w.yaml"));
  REQUIRE_MENTIONS(config_error("optim: {warmup_steps: 300, decay_steps: 100}"),
                   "optim.warmup_steps", "optim.decay_steps");
  REQUIRE_MENTIONS(config_error("prepare: {val_fraction: 1.0}"), "prepare.val_fraction");
  REQUIRE_MENTIONS(config_error("prepare: {val_fraction: -0.1}"), "prepare.val_fraction");
  REQUIRE_NOTHROW(parse_config("prepare: {val_fraction: 0}", "v.yaml"));
  REQUIRE_MENTIONS(config_error("model: {isolate_positions: [3, 128]}"),
                   "model.isolate_positions", "128", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("model: {isolate_positions: [-1]}"), "model.isolate_positions");
  REQUIRE_MENTIONS(config_error("prepare: {vocab_size: 256}"), "prepare.vocab_size",
                   "configs/x.yaml");
  REQUIRE_NOTHROW(parse_config("prepare: {vocab_size: 257}", "p.yaml"));
  REQUIRE_NOTHROW(parse_config("prepare: {vocab_size: 100, tokenizer: byte}", "p.yaml"));
  REQUIRE_MENTIONS(config_error("optim: {beta1: 1.0}"), "optim.beta1");
  REQUIRE_MENTIONS(config_error("optim: {beta2: 1.5}"), "optim.beta2");
  REQUIRE_MENTIONS(config_error("optim: {beta1: -0.1}"), "optim.beta1");
  REQUIRE_MENTIONS(config_error("run: {name: 'a/b'}"), "run.name", "configs/x.yaml");

  // validate() on a config built in code names the (empty) source as such.
  RunConfig c;
  c.model.n_head = 3;
  const Caught e = error_of<ConfigError>([&] { validate(c); });
  REQUIRE_MENTIONS(e, "model.n_embd", "model.n_head");
}

TEST_CASE("config: files: missing, malformed, and loaded with source_file", "[config]") {
  test::TempDir dir;
  {
    const std::string path = (dir.path / "nope.yaml").string();
    const Caught e = error_of<IOError>([&] { load_config(path); });
    REQUIRE_MENTIONS(e, "nope.yaml", "does not exist");
  }
  {
    const Caught e = error_of<IOError>([&] { load_config(dir.path.string()); });
    REQUIRE_MENTIONS(e, "folder");
  }
  {
    const std::string path = dir.write("broken.yaml", "model:\n  n_layer: [1, 2\ntrain: {}\n");
    const Caught e = error_of<ConfigError>([&] { load_config(path); });
    REQUIRE_MENTIONS(e, "malformed YAML", "broken.yaml", "line ", "column ");
  }
  {
    // An unclosed quote is named at its line and column (it had swallowed the rest of the file
    // into model.arch's value); quotes inside plain words and closed quotes are fine.
    const std::string path =
        dir.write("quote.yaml", "run: {name: it's}\nmodel:\n  arch: \"gpt2\n  n_layer: 2\n");
    const Caught e = error_of<ConfigError>([&] { load_config(path); });
    REQUIRE_MENTIONS(e, "malformed YAML", "quote.yaml", "line 3, column 9", "not closed");
    const std::string good = dir.write(
        "quotes.yaml",
        "prepare: {inputs: ['it''s.txt', \"a\\\"b.txt\"]}  # don't\nmodel: {arch: 'llama'}\n");
    const RunConfig c = load_config(good);
    REQUIRE(c.model.arch == Arch::Llama);
    REQUIRE(c.prepare.inputs == std::vector<std::string>{"it's.txt", "a\"b.txt"});
  }
  {
    // A FIFO would block the read forever: refused before opening.
    const std::string fifo = (dir.path / "pipe.yaml").string();
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    REQUIRE_MENTIONS(error_of<IOError>([&] { load_config(fifo); }), "pipe.yaml",
                     "not a regular file");
  }
  {
    const std::string path = dir.write("tabs.yaml", "model:\n\tn_layer: 2\n");
    REQUIRE_MENTIONS(error_of<ConfigError>([&] { load_config(path); }), "tabs.yaml");
  }
  {
    const std::string path = dir.write("typo.yaml", "train:\n  stpes: 10\n");
    const Caught e = error_of<ConfigError>([&] { load_config(path); });
    REQUIRE_MENTIONS(e, "train.stpes", "typo.yaml", "line 2");
    REQUIRE(contains(e.hint, "did you mean 'train.steps'"));
  }
  {
    const std::string path = dir.write("good.yaml", "model: {n_layer: 2}\n");
    const RunConfig c = load_config(path, {"train.steps=70"});
    REQUIRE(c.source_file == path);
    REQUIRE(c.model.n_layer == 2);
    REQUIRE(c.train.steps == 70);
  }
}

TEST_CASE("config: overrides take effect, later ones win, errors name the override",
          "[config]") {
  const RunConfig c = parse_config(
      "model: {n_layer: 2, arch: llama}\n", "o.yaml",
      {"model.n_layer=3", "train.steps=50", "model.n_layer = 5", "model.isolate_positions=[3,7]",
       "prepare.inputs=[a.txt, 'b c.txt']", "model.tie_embeddings=false", "optim.lr=3e-3",
       "run.name=my_run", "data.tokenizer=", "run.seed=42"});
  REQUIRE(c.model.n_layer == 5);
  REQUIRE(c.model.arch == Arch::Llama);  // from the file
  REQUIRE(c.train.steps == 50);
  REQUIRE(c.model.isolate_positions == std::vector<int64_t>{3, 7});
  REQUIRE(c.prepare.inputs == std::vector<std::string>{"a.txt", "b c.txt"});
  REQUIRE_FALSE(c.model.tie_embeddings);
  REQUIRE(c.optim.lr == 3e-3);
  REQUIRE(c.run.name == "my_run");
  REQUIRE(c.data.tokenizer.empty());
  REQUIRE(c.run.seed == 42);
  // An empty list.
  REQUIRE(parse_config("model: {isolate_positions: [1]}", "o.yaml", {"model.isolate_positions=[]"})
              .model.isolate_positions.empty());

  {
    const Caught e = config_error("", {"model.n_layrs=3"});
    REQUIRE_MENTIONS(e, "model.n_layrs=3", "configs/x.yaml");
    REQUIRE(contains(e.hint, "model.n_layer"));
  }
  REQUIRE_MENTIONS(config_error("", {"model.n_layer=three"}), "model.n_layer=three",
                   "an integer", "'three'", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("", {"model.isolate_positions=[3,"}),
                   "model.isolate_positions=[3,", "not valid YAML");
  REQUIRE_MENTIONS(config_error("", {"model.isolate_positions=3"}), "model.isolate_positions=3",
                   "a list of integers");
  REQUIRE_MENTIONS(config_error("", {"train.steps"}), "train.steps", "key=value");
  REQUIRE_MENTIONS(config_error("", {"steps=3"}), "steps=3");
  REQUIRE(contains(config_error("", {"steps=3"}).hint, "train.steps"));
  REQUIRE_MENTIONS(config_error("", {"model=3"}), "model=3", "section");
  REQUIRE_MENTIONS(config_error("", {"modl.n_layer=3"}), "modl.n_layer=3");
  // An override that makes the config impossible fails validation.
  REQUIRE_MENTIONS(config_error("", {"model.n_head=3"}), "model.n_embd", "model.n_head");
}

TEST_CASE("config: variants apply, and bad variants fail at load time", "[config]") {
  const char* yaml =
      "model: {arch: llama, attn_output_norm: none}\n"
      "variants:\n"
      "  - {name: baseline, set: {model.attn_output_norm: none}}\n"
      "  - name: headwise_rmsnorm\n"
      "    set:\n"
      "      - model.attn_output_norm=headwise_rmsnorm\n"
      "      - model.gamma_shared=true\n";
  const RunConfig c = parse_config(yaml, "v.yaml", {"train.steps=30", "model.gamma_shared=false"});
  REQUIRE(c.variants.size() == 2);
  const RunConfig a = apply_variant(c, c.variants[0]);
  const RunConfig b = apply_variant(c, c.variants[1]);
  REQUIRE(a.variants.empty());
  REQUIRE(b.variants.empty());
  REQUIRE(a.model.attn_output_norm == AttnOutputNorm::None);
  REQUIRE(b.model.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm);
  REQUIRE(a.train.steps == 30);  // --set reaches every variant
  REQUIRE(b.train.steps == 30);
  REQUIRE_FALSE(a.model.gamma_shared);
  REQUIRE(b.model.gamma_shared);  // a variant's own set wins over --set
  REQUIRE(c.model.attn_output_norm == AttnOutputNorm::None);  // the base is unchanged
  // A variant built in code (the trainer's single "main" run).
  require_same(apply_variant(c, {"main", {}}), [&] {
    RunConfig d = c;
    d.variants.clear();
    return d;
  }());

  {
    const Caught e = config_error(
        "variants:\n  - {name: a, set: {model.n_layer: 2}}\n  - {name: a, set: {}}\n");
    REQUIRE_MENTIONS(e, "'a'", "twice", "configs/x.yaml");
  }
  REQUIRE_MENTIONS(config_error("variants:\n  - {set: {model.n_layer: 2}}\n"), "variants[0]",
                   "no name", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("variants:\n  - {name: '', set: {}}\n"), "variants[0]",
                   "no name");
  for (const char* bad : {"a/b", "a b", "..", "x:y"})
    REQUIRE_MENTIONS(config_error(std::string("variants:\n  - {name: '") + bad + "'}\n"), bad,
                     "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("variants:\n  - {name: a, sett: {}}\n"), "sett", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("variants: {name: a}\n"), "variants", "a list");
  REQUIRE_MENTIONS(config_error("variants:\n  - baseline\n"), "variants[0]", "a map");
  {  // unknown key in a variant's set: names the key, the variant and the file
    const Caught e = config_error("variants:\n  - {name: v1, set: {model.n_layrs: 2}}\n");
    REQUIRE_MENTIONS(e, "model.n_layrs", "v1", "configs/x.yaml");
    REQUIRE(contains(e.hint, "model.n_layer"));
  }
  REQUIRE_MENTIONS(config_error("variants:\n  - {name: v1, set: [\"model.n_layer=x\"]}\n"),
                   "model.n_layer=x", "v1", "an integer", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("variants:\n  - {name: v1, set: {model.arch: gpt3}}\n"),
                   "variant 'v1'", "model.arch", "gpt3", "configs/x.yaml");
  REQUIRE_MENTIONS(
      config_error("variants:\n  - {name: v1, set: {model.n_layer: 2, model.n_layer: 3}}\n"),
      "model.n_layer", "twice");
  // apply_variant on a hand-made bad variant names the override and the variant.
  const Caught e = error_of<ConfigError>(
      [&] { apply_variant(c, {"hand", {"model.n_embd=100", "model.n_head=3"}}); });
  REQUIRE_MENTIONS(e, "variant 'hand'", "model.n_embd", "v.yaml");
  REQUIRE_MENTIONS(error_of<ConfigError>([&] { apply_variant(c, {"hand", {"x.y=1"}}); }),
                   "x.y=1", "hand");
}

TEST_CASE("config: choice keys are enums; each name reads, writes and prints as in YAML",
          "[config]") {
  // Every name of every choice key: parsed into its enum, written back by to_yaml as the same
  // text, and printed by choice_text as that text.
  struct Key {
    const char* key;
    std::vector<const char*> names;
    std::function<std::string(const RunConfig&)> text;
  };
  const std::vector<Key> keys = {
      {"run.precision", {"auto", "bf16", "fp32"},
       [](const RunConfig& c) { return choice_text(c.run.precision); }},
      {"run.attention_kernels", {"auto", "own"},
       [](const RunConfig& c) { return choice_text(c.run.attention_kernels); }},
      {"model.arch", {"gpt2", "llama"},
       [](const RunConfig& c) { return choice_text(c.model.arch); }},
      {"model.attn_output_norm", {"none", "headwise_rmsnorm"},
       [](const RunConfig& c) { return choice_text(c.model.attn_output_norm); }},
      {"model.attention", {"softmax", "sigmoid"},
       [](const RunConfig& c) { return choice_text(c.model.attention); }},
      {"model.gamma_init", {"first_token_std", "ones"},
       [](const RunConfig& c) { return choice_text(c.model.gamma_init); }},
      {"model.amplify_mode", {"centered", "plain"},
       [](const RunConfig& c) { return choice_text(c.model.amplify_mode); }},
      {"prepare.val_split", {"documents", "tail"},
       [](const RunConfig& c) { return choice_text(c.prepare.val_split); }},
      {"run.bf16_gemm", {"rounded", "fast"},
       [](const RunConfig& c) { return choice_text(c.run.bf16_gemm); }},
      {"run.metrics_priority", {"low", "equal"},
       [](const RunConfig& c) { return choice_text(c.run.metrics_priority); }},
      {"run.gemm_epilogues", {"none", "forward", "forward_bias_grad", "forward_backward"},
       [](const RunConfig& c) { return choice_text(c.run.gemm_epilogues); }},
      {"run.cpu_gemm", {"auto", "openblas", "reference"},
       [](const RunConfig& c) { return choice_text(c.run.cpu_gemm); }},
  };
  for (const Key& k : keys) {
    const std::string key = k.key, bare = key.substr(key.find('.') + 1);
    for (const char* name : k.names) {
      INFO(key << " = " << name);
      const RunConfig c = parse_config("", "c.yaml", {key + "=" + name});
      REQUIRE(k.text(c) == name);
      REQUIRE(contains(to_yaml(c), "  " + bare + ": " + name + "\n"));
      REQUIRE(k.text(parse_config(to_yaml(c), "back.yaml")) == name);
    }
    // A misspelt name: the key, the value, where, and every name, at parse time.
    const std::string wrong = std::string(k.names[1]) + "x";
    const Caught e = config_error("", {key + "=" + wrong});
    std::string all;
    for (const char* name : k.names) all += (all.empty() ? "" : ", ") + std::string(name);
    const std::string quoted = "'" + wrong + "'";
    REQUIRE_MENTIONS(e, k.key, quoted.c_str(), "configs/x.yaml", all.c_str());
    REQUIRE(contains(e.hint, "did you mean '" + std::string(k.names[1]) + "'"));
    // Null and non-scalar values are refused naming the choices too.
    REQUIRE_MENTIONS(config_error(key.substr(0, key.find('.')) + ": {" + bare + ": }"), k.key,
                     "configs/x.yaml", all.c_str());
    REQUIRE_MENTIONS(config_error(key.substr(0, key.find('.')) + ": {" + bare + ": [a]}"), k.key,
                     "a list", all.c_str());
  }
  // In a file, the message gives the line.
  REQUIRE_MENTIONS(config_error("run: {seed: 1}\nmodel:\n  arch: gtp2\n"), "model.arch",
                   "'gtp2'", "configs/x.yaml (line 3)", "gpt2, llama");
  // The defaults and the strings saved elsewhere (export metadata, run header).
  const RunConfig defaults;
  REQUIRE(defaults.model.arch == Arch::Gpt2);
  REQUIRE(defaults.run.precision == PrecisionSetting::Auto);
  REQUIRE(defaults.run.attention_kernels == ops::AttentionKernels::Auto);
  REQUIRE(std::string(choice_text(Arch::Llama)) == "llama");
  REQUIRE(std::string(choice_text(AttnOutputNorm::HeadwiseRmsNorm)) == "headwise_rmsnorm");
  // differing_keys writes the values as YAML text.
  const RunConfig llama = parse_config("model: {arch: llama, attention: sigmoid}", "l.yaml");
  const std::vector<KeyDifference> d = differing_keys(defaults, llama, "model");
  REQUIRE(d.size() == 2);
  REQUIRE(d[0].key == "model.arch");
  REQUIRE(d[0].a == "gpt2");
  REQUIRE(d[0].b == "llama");
  REQUIRE(d[1].key == "model.attention");
  REQUIRE(d[1].b == "sigmoid");
}

TEST_CASE("config: the run keys that were SINKLAB_* environment variables", "[config]") {
  // run.profile (SINKLAB_PROFILE), run.bucket_mib (SINKLAB_BUCKET_MIB), run.collective_timeout_s
  // (SINKLAB_COLLECTIVE_TIMEOUT and SINKLAB_NCCL_TIMEOUT), run.bf16_gemm (SINKLAB_BF16_GEMM),
  // run.metrics_priority (SINKLAB_METRICS_PRIORITY), run.cpu_gemm (SINKLAB_CPU_GEMM): their
  // defaults are what the unset variables meant, and the resolved config saves them.
  const RunConfig defaults;
  REQUIRE_FALSE(defaults.run.profile);
  REQUIRE(defaults.run.bucket_mib == 25.0);
  REQUIRE(defaults.run.collective_timeout_s == 600.0);
  REQUIRE(defaults.run.bf16_gemm == ops::Bf16Gemm::Rounded);
  REQUIRE(defaults.run.metrics_priority == SidePriority::Low);
  REQUIRE(defaults.run.cpu_gemm == CpuGemmSetting::Auto);
  REQUIRE(defaults.run.gemm_epilogues == ops::GemmEpilogues::ForwardBiasGrad);
  REQUIRE(defaults.run.bias_grad_columns);
  REQUIRE(defaults.run.fused_cross_entropy);
  REQUIRE(defaults.run.fold_residual_grads);
  REQUIRE(defaults.run.rope_in_place);
  REQUIRE(defaults.run.bf16_branch_outputs);
  REQUIRE(defaults.run.fused_norm_param_grads);
  REQUIRE(defaults.run.flat_weight_operands);
  REQUIRE_FALSE(defaults.run.head_norm_statistics);
  REQUIRE(defaults.run.sigmoid_row_sums);
  REQUIRE_FALSE(defaults.run.one_pass_order_statistics);
  REQUIRE_FALSE(defaults.run.metrics_exchange_on_side);  // until measured on several GPUs
  REQUIRE_FALSE(defaults.run.cuda_graph);
  REQUIRE(defaults.run.deterministic);
  REQUIRE(defaults.run.release_forward_inputs);
  REQUIRE(defaults.run.variant_placement == VariantPlacement::Together);
  REQUIRE(contains(to_yaml(defaults), "  deterministic: true\n  release_forward_inputs: true\n"
                                      "  variant_placement: together\n"));
  REQUIRE_FALSE(parse_config("", "p.yaml", {"run.release_forward_inputs=false"})
                    .run.release_forward_inputs);
  REQUIRE(parse_config("", "p.yaml", {"run.variant_placement=split"}).run.variant_placement ==
          VariantPlacement::Split);
  REQUIRE_MENTIONS(config_error("run: {variant_placement: apart}"), "run.variant_placement",
                   "together", "split", "configs/x.yaml");
  REQUIRE(contains(to_yaml(defaults),
                   "  seed: 1337\n  profile: false\n  bucket_mib: 25.0\n"
                   "  collective_timeout_s: 600.0\n  bf16_gemm: rounded\n"
                   "  metrics_priority: low\n  cpu_gemm: auto\n  gemm_epilogues: forward_bias_grad\n"
                   "  bias_grad_columns: true\n  gemm_search: 8\n  fused_cross_entropy: true\n"
                   "  fold_residual_grads: true\n"
                   "  rope_in_place: true\n  bf16_branch_outputs: true\n"
                   "  fused_norm_param_grads: true\n  flat_weight_operands: true\n"
                   "  head_norm_statistics: false\n"
                   "  sigmoid_row_sums: true\n"
                   "  one_pass_order_statistics: false\n"
                   "  metrics_exchange_on_side: false\n"
                   "  cuda_graph: false\n"
                   "  deterministic: true\n"));
  const RunConfig set = parse_config(
      "", "s.yaml",
      {"run.profile=true", "run.bucket_mib=0.02", "run.collective_timeout_s=2.5",
       "run.bf16_gemm=fast", "run.metrics_priority=equal", "run.cpu_gemm=reference",
       "run.gemm_epilogues=forward", "run.bias_grad_columns=false", "run.gemm_search=0",
       "run.fused_cross_entropy=false",
       "run.fold_residual_grads=false", "run.rope_in_place=false",
       "run.bf16_branch_outputs=false", "run.fused_norm_param_grads=false",
       "run.flat_weight_operands=false",
       "run.head_norm_statistics=true", "run.sigmoid_row_sums=false",
       "run.one_pass_order_statistics=true", "run.metrics_exchange_on_side=true",
       "run.cuda_graph=true", "run.deterministic=false"});
  const std::string text = to_yaml(set);
  INFO(text);
  REQUIRE(contains(text, "  profile: true\n  bucket_mib: 0.02\n  collective_timeout_s: 2.5\n"
                         "  bf16_gemm: fast\n  metrics_priority: equal\n  cpu_gemm: reference\n"
                         "  gemm_epilogues: forward\n  bias_grad_columns: false\n"
                         "  gemm_search: 0\n  fused_cross_entropy: false\n"
                         "  fold_residual_grads: false\n  rope_in_place: false\n"
                         "  bf16_branch_outputs: false\n  fused_norm_param_grads: false\n"
                         "  flat_weight_operands: false\n"
                         "  head_norm_statistics: true\n"
                         "  sigmoid_row_sums: false\n"
                         "  one_pass_order_statistics: true\n"
                         "  metrics_exchange_on_side: true\n"
                         "  cuda_graph: true\n"
                         "  deterministic: false\n"));
  RunConfig back = parse_config(text, "s.yaml");
  require_same(back, set);
  // Sizes and times: positive, and bounded.
  REQUIRE_MENTIONS(config_error("run: {bucket_mib: 0}"), "run.bucket_mib", "positive",
                   "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("run: {bucket_mib: -1}"), "run.bucket_mib", "positive");
  REQUIRE_MENTIONS(config_error("run: {bucket_mib: 2e6}"), "run.bucket_mib", "1048576",
                   "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("run: {collective_timeout_s: 0}"), "run.collective_timeout_s",
                   "positive", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("", {"run.collective_timeout_s=1e8"}),
                   "run.collective_timeout_s", "10000000", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("run: {metrics_priority: high}"), "run.metrics_priority",
                   "'high'", "low, equal", "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("run: {bf16_gemm: slow}"), "run.bf16_gemm", "rounded, fast");
  REQUIRE_MENTIONS(config_error("run: {cpu_gemm: mkl}"), "run.cpu_gemm",
                   "auto, openblas, reference");
  REQUIRE_NOTHROW(parse_config("run: {bucket_mib: 1048576, collective_timeout_s: 1e7}", "b.yaml"));
  // run.gemm_search: 0 to 64 candidate algorithms.
  REQUIRE_MENTIONS(config_error("run: {gemm_search: 65}"), "run.gemm_search", "65", "64",
                   "configs/x.yaml");
  REQUIRE_MENTIONS(config_error("run: {gemm_search: -1}"), "run.gemm_search", "-1",
                   "zero or more");
  REQUIRE(parse_config("run: {gemm_search: 64}", "b.yaml").run.gemm_search == 64);
}

TEST_CASE("config: to_yaml writes every key and reads back to the same config", "[config]") {
  SECTION("defaults") {
    const RunConfig defaults;
    const std::string text = to_yaml(defaults);
    for (const char* key : {"run:", "model:", "data:", "prepare:", "train:", "optim:", "metrics:",
                            "checkpoint:", "variants:", "  n_layer: 4", "  tokenizer: \"\"",
                            "  isolate_positions: []", "  gamma_init: first_token_std",
                            "  tensorboard: true"})
      REQUIRE(contains(text, key));
    require_same(parse_config(text, "resolved.yaml"), defaults);
  }
  SECTION("every key set, variants included") {
    const RunConfig c = parse_config(kFullYaml, "full.yaml");
    const std::string text = to_yaml(c);
    INFO(text);
    REQUIRE(contains(text, "full.yaml"));  // the header says where it came from
    RunConfig back = parse_config(text, "resolved.yaml");
    require_full(back);
    back.source_file = c.source_file;
    require_same(back, c);
    REQUIRE(to_yaml(back) == text);
  }
  SECTION("strings YAML would read as something else, and odd characters") {
    RunConfig c;
    c.run.out_dir = "a: b # not a comment";
    c.data.tokenizer = "true";
    c.data.dir = "123";
    c.data.train_pattern = "[x]";
    c.data.val_pattern = " padded ";
    c.prepare.inputs = {"null", "~", "1e3", "x y.txt", "#c", "with \"quotes\" and 'ticks'",
                        "tab\there", "caf\xc3\xa9.txt", "line\nbreak", ""};
    c.model.norm_eps = 1e-300;
    c.model.init_std = 0.1 + 0.2;  // not a short decimal
    c.model.rope_theta = 1e22;
    c.optim.min_lr = 0.0;
    c.variants = {{"v", {"data.train_pattern=\"[y]\"", "run.out_dir='a: c'"}}};
    const std::string text = to_yaml(c);
    INFO(text);
    RunConfig back = parse_config(text, "");
    back.source_file = c.source_file;
    c.variants[0].overrides = {"data.train_pattern=\"[y]\"", "run.out_dir=\"a: c\""};
    require_same(back, c);
    REQUIRE(apply_variant(back, back.variants[0]).data.train_pattern == "[y]");
    REQUIRE(apply_variant(back, back.variants[0]).run.out_dir == "a: c");
  }
  SECTION("a hand-made variant that does not parse is written as given") {
    RunConfig c;
    c.variants = {{"v", {"not an override"}}};
    const std::string text = to_yaml(c);
    REQUIRE(contains(text, "not an override"));
  }
}

TEST_CASE("config: the shipped configs load and their variants apply", "[config]") {
  const std::string dir = std::string(SINKLAB_SOURCE_DIR) + "/configs/";
  {
    const RunConfig c = load_config(dir + "quickstart.yaml");
    REQUIRE(c.model.arch == Arch::Llama);
    REQUIRE(c.model.n_layer == 4);
    REQUIRE(c.model.n_head == 4);
    REQUIRE(c.model.n_embd == 128);
    REQUIRE(c.model.block_size == 128);
    REQUIRE(c.train.batch_size == 8);
    REQUIRE(c.data.dir == "data/quickstart");
    REQUIRE(c.prepare.inputs == std::vector<std::string>{"data/raw/moby_dick.txt"});
    REQUIRE(c.prepare.tokenizer == "bpe");
    REQUIRE(c.prepare.vocab_size == 512);
    REQUIRE(c.run.device == "cpu");
    REQUIRE(c.variants.size() == 2);
    REQUIRE(c.variants[0].name == "baseline");
    REQUIRE(c.variants[1].name == "headwise_rmsnorm");
    REQUIRE(apply_variant(c, c.variants[0]).model.attn_output_norm == AttnOutputNorm::None);
    REQUIRE(apply_variant(c, c.variants[1]).model.attn_output_norm ==
            AttnOutputNorm::HeadwiseRmsNorm);
  }
  {
    const RunConfig c = load_config(dir + "tiny_test.yaml");
    REQUIRE(c.model.arch == Arch::Gpt2);
    REQUIRE(c.model.n_layer == 2);
    REQUIRE(c.model.n_embd == 32);
    REQUIRE(c.model.n_head == 2);
    REQUIRE(c.model.block_size == 32);
    REQUIRE(c.train.batch_size == 4);
    REQUIRE(c.train.steps == 20);
    // The overrides scripts/crosscheck.sh uses.
    REQUIRE_NOTHROW(load_config(dir + "tiny_test.yaml",
                                {"model.vocab_size=97", "model.block_size=16", "model.arch=llama",
                                 "model.attn_output_norm=headwise_rmsnorm",
                                 "model.isolate_positions=[3,7]", "model.attention=sigmoid"}));
  }
}

TEST_CASE("config: every YAML file under configs/ loads and validates", "[config]") {
  const std::filesystem::path root = std::filesystem::path(SINKLAB_SOURCE_DIR) / "configs";
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".yaml") continue;
    INFO(entry.path().string());
    const RunConfig c = load_config(entry.path().string());
    for (const VariantSpec& v : c.variants) validate(apply_variant(c, v));
    ++files;
  }
  REQUIRE(files >= 5);
}

TEST_CASE("every shipped config under configs/ loads, and so does each of its variants",
          "[config]") {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& entry :
       fs::recursive_directory_iterator(fs::path(SINKLAB_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    INFO(entry.path().string());
    RunConfig config;
    REQUIRE_NOTHROW(config = load_config(entry.path().string()));
    for (const VariantSpec& v : config.variants) REQUIRE_NOTHROW(apply_variant(config, v));
    ++checked;
  }
  REQUIRE(checked >= 5);
}

TEST_CASE("every size key has an upper bound, and the error names the memory it would need",
          "[config]") {
  // issue 20: these exited 139, died of std::bad_alloc or said "negative dimension".
  {
    const Caught e = config_error("model: {vocab_size: 576460752303423488, n_layer: 1}");
    REQUIRE_MENTIONS(e, "model.vocab_size", "576460752303423488", "16777216", "configs/x.yaml",
                     "would need about", "EiB");
  }
  REQUIRE_MENTIONS(config_error("model: {vocab_multiple: 4611686018427387904}"),
                   "model.vocab_multiple", "65536", "would need about");
  REQUIRE_MENTIONS(config_error("model: {n_layer: 1000000000}"), "model.n_layer", "4096",
                   "would need about", "PiB");
  REQUIRE_MENTIONS(config_error("model: {n_embd: 4611686018427387904}"), "model.n_embd",
                   "65536", "would need about");
  REQUIRE_MENTIONS(config_error("model: {ffn_hidden: 100000000000}"), "model.ffn_hidden",
                   "would need about");
  REQUIRE_MENTIONS(config_error("train: {batch_size: 1000000000000}"), "train.batch_size",
                   "would need about");
  REQUIRE_MENTIONS(config_error("train: {tokens_per_step: 9223372036854775744}"),
                   "train.tokens_per_step", "4294967296");
  REQUIRE_MENTIONS(config_error("train: {eval_batches: 1000000000000}"), "train.eval_batches");
  REQUIRE_MENTIONS(config_error("train: {sample_tokens: 1000000000000}"), "train.sample_tokens");
  REQUIRE_MENTIONS(config_error("model: {block_size: 2000000}"), "model.block_size");
  REQUIRE_MENTIONS(config_error("metrics: {rank_sequences: 2000000}"), "metrics.rank_sequences");
  // Through --set and variants too.
  REQUIRE_MENTIONS(config_error("", {"model.vocab_size=576460752303423488"}), "model.vocab_size");
  REQUIRE_MENTIONS(config_error("variants:\n  - {name: big, set: {model.n_layer: 5000}}"),
                   "model.n_layer", "big");
  // A float for an integer key (1e12 is a float in YAML): the message says so and how to write it.
  {
    const Caught e = config_error("train: {batch_size: 1e12}");
    REQUIRE_MENTIONS(e, "train.batch_size", "1e12", "floating-point");
    REQUIRE(contains(e.hint, "1000000000000"));
  }
  REQUIRE_MENTIONS(config_error("", {"model.ffn_hidden=1e11"}), "model.ffn_hidden", "1e11",
                   "floating-point");
  // The bounds themselves are allowed.
  REQUIRE_NOTHROW(parse_config("model: {n_layer: 4096, vocab_size: 16777216, block_size: 1048576}\n"
                               "train: {eval_batches: 1048576, sample_tokens: 1048576}",
                               "b.yaml"));
}

TEST_CASE("the memory estimate stays above the peaks measured on a GPU, within 1.45 times them",
          "[config]") {
  // The pool's high-water mark (memory_peak_mib) on an H100 (docs/PERFORMANCE.md), against the
  // estimate of the same config and batch: the twenty-third session's (call 1, 4 steps each)
  // with run.release_forward_inputs off, and the twenty-fourth's (call 2, 6 steps) with it on;
  // LLaMA-152M with it on from an H200 (twenty-seventh session, bench_gpu.sh: 19,811 MiB).
  struct Measured {
    const char* config;
    int64_t batch_size;
    bool release;
    double peak_gib;
  };
  const std::string dir = std::string(SINKLAB_SOURCE_DIR) + "/configs/bench/";
  for (const Measured& m : {Measured{"gpt2_124m.yaml", 32, false, 20.2},
                            Measured{"gpt2_124m.yaml", 32, true, 16.0},
                            Measured{"llama_152m.yaml", 32, false, 23.5},
                            Measured{"llama_152m.yaml", 32, true, 19.35},
                            Measured{"llama152m_three_variants.yaml", 16, false, 19.2},
                            Measured{"llama152m_three_variants.yaml", 32, false, 29.7}}) {
    INFO(m.config << " at train.batch_size " << m.batch_size << ", release " << m.release);
    const std::string release = m.release ? "true" : "false";
    const RunConfig base =
        load_config(dir + m.config, {"train.batch_size=" + std::to_string(m.batch_size),
                                     "run.release_forward_inputs=" + release});
    std::vector<MemoryEstimate> estimates;
    if (base.variants.empty()) estimates.push_back(estimate_training_memory(base));
    for (const VariantSpec& v : base.variants)
      estimates.push_back(estimate_training_memory(apply_variant(base, v)));
    const double estimate_gib = side_by_side_bytes(estimates) / (1 << 30);
    INFO("estimated " << estimate_gib << " GiB, measured " << m.peak_gib);
    REQUIRE(estimate_gib > m.peak_gib);
    REQUIRE(estimate_gib < 1.45 * m.peak_gib);
  }
  // On the CPU (f32 values) the activations count twice the bytes of bf16 on a GPU.
  RunConfig c = load_config(dir + "gpt2_124m.yaml");
  const MemoryEstimate gpu = estimate_training_memory(c);
  c.run.device = "cpu";
  const MemoryEstimate cpu = estimate_training_memory(c);
  REQUIRE(cpu.parameter_bytes == gpu.parameter_bytes);
  const double attention_weights = 4.0 * 32 * 12 * 1024 * 1024;  // (B, NH, T, T) f32
  REQUIRE(cpu.activation_bytes - attention_weights ==
          Approx(2 * (gpu.activation_bytes - attention_weights)));
}

TEST_CASE("the memory a config needs is checked against the device's before allocating",
          "[config]") {
  RunConfig c = parse_config("model: {n_layer: 4, n_embd: 128, n_head: 4, vocab_size: 512}",
                             "m.yaml");
  const MemoryEstimate small = estimate_training_memory(c);
  REQUIRE(small.total() > 0);
  REQUIRE(small.total() < 1e9);
  REQUIRE_NOTHROW(check_fits_in_memory(c, small.total(), 8.0 * (1 << 30), "cpu"));
  REQUIRE_NOTHROW(check_fits_in_memory(c, 1e30, 0.0, "unknown"));  // unknown: no check
  // Within every bound, far beyond any machine: the error names the keys, the need and the device.
  c.model.n_embd = 65536;
  c.model.n_layer = 4096;
  const MemoryEstimate big = estimate_training_memory(c);
  REQUIRE(big.parameter_bytes > 1e15);
  const Caught e = error_of<ConfigError>(
      [&] { check_fits_in_memory(c, big.total(), 64.0 * (1 << 30), "this machine's RAM"); });
  REQUIRE_MENTIONS(e, "model.n_layer", "model.n_embd", "train.batch_size", "would need about",
                   "PiB", "this machine's RAM has 64.0 GiB", "m.yaml");
  REQUIRE(contains(e.hint, "the layers"));
  // The activations of a huge micro-batch are named as the largest part.
  c.model.n_embd = 128;
  c.model.n_layer = 4;
  c.train.batch_size = 1 << 20;
  const Caught a = error_of<ConfigError>([&] {
    check_fits_in_memory(c, estimate_training_memory(c).total(), 64.0 * (1 << 30), "cpu");
  });
  REQUIRE(contains(a.hint, "activations"));
  // Variants side by side on one device: each holds its parameters, gradients and moments, but
  // they step in turn, so one micro-batch's activations (the largest variant's) count once.
  c.train.batch_size = 8;
  const MemoryEstimate one = estimate_training_memory(c);
  REQUIRE(one.held_bytes() == one.parameter_bytes);
  REQUIRE(side_by_side_bytes({one}) == one.total());
  MemoryEstimate larger = one;
  larger.activation_bytes = 3 * one.activation_bytes;
  larger.parameter_bytes = 2 * one.parameter_bytes;
  REQUIRE(side_by_side_bytes({one, larger, one}) ==
          4 * one.parameter_bytes + 3 * one.activation_bytes);
  REQUIRE(side_by_side_bytes({larger, one}) == side_by_side_bytes({one, larger}));
  // The message counts the variants, gives the figures per variant and names the ways to train
  // them apart.
  const double three_bytes = side_by_side_bytes({one, one, one});
  REQUIRE_NOTHROW(check_fits_in_memory(c, three_bytes, 1.01 * three_bytes, "cuda:0", 3));
  const Caught three = error_of<ConfigError>(
      [&] { check_fits_in_memory(c, three_bytes, 0.99 * three_bytes, "cuda:0", 3); });
  REQUIRE_MENTIONS(three, "training 3 variants side by side, each", "per variant",
                   "which the variants use in turn", "cuda:0 has");
  REQUIRE(contains(three.hint, "--variant NAME"));
  REQUIRE(contains(three.hint, "run.variant_placement: split"));
  REQUIRE_FALSE(contains(a.message, "side by side"));  // one variant: as before
  REQUIRE_FALSE(contains(a.hint, "--variant"));
  // run.cuda_graph with metrics every N > 1 steps holds a micro-batch's activations twice (the
  // recording's and the pool's); not with metrics every step (nothing is recorded), nor on the
  // CPU, nor with the metrics off (the pool gives back what the first step left).
  c.run.device = "cuda:0";
  c.run.cuda_graph = true;
  c.metrics.every = 10;
  const MemoryEstimate graph = estimate_training_memory(c);
  REQUIRE(graph.graph_bytes == graph.activation_bytes);
  REQUIRE(graph.total() == graph.parameter_bytes + 2 * graph.activation_bytes);
  const Caught twice = error_of<ConfigError>(
      [&] { check_fits_in_memory(c, graph.total(), one.total(), "cuda:0"); });
  REQUIRE_MENTIONS(twice, "as much again for run.cuda_graph's recording");
  REQUIRE(contains(twice.hint, "run.cuda_graph: false"));
  // A recording is the variant's own for the whole run: side by side, each variant's counts.
  REQUIRE(graph.held_bytes() == graph.parameter_bytes + graph.activation_bytes);
  REQUIRE(side_by_side_bytes({graph, graph}) ==
          2 * graph.held_bytes() + graph.activation_bytes);
  const Caught twice_each = error_of<ConfigError>([&] {
    check_fits_in_memory(c, side_by_side_bytes({graph, graph}), one.total(), "cuda:0", 2);
  });
  REQUIRE_MENTIONS(twice_each, "as much again per variant for run.cuda_graph's recording");
  for (int64_t every : {1, 0}) {
    c.metrics.every = every;
    REQUIRE(estimate_training_memory(c).graph_bytes == 0);
  }
  c.metrics.every = 10;
  c.run.device = "cpu";
  REQUIRE(estimate_training_memory(c).graph_bytes == 0);
}
