// Run configuration: YAML file -> validated, fully defaulted RunConfig.
//
// Every key has a type, a default and a check; unknown keys, wrong types and impossible
// combinations raise ConfigError naming the key and the file. `--set a.b=value` overrides apply
// after the file. The resolved config (every default filled) can be written back as YAML.
// A `variants:` list makes a side-by-side run: each variant is a name plus overrides (dotted keys,
// same syntax as --set) applied on top of the base config.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/device_runtime.h"
#include "core/precision.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "train/arch.h"

namespace sinklab::train {

// The values of the choice keys (a closed set of names in YAML). Each enum's YAML names are
// written in one table in config.cpp, and everything goes through it: parsing, to_yaml,
// differing_keys, error messages, and wherever a value is printed or saved (run header,
// checkpoint config, export metadata). model.arch is Arch (train/arch.h),
// run.attention_kernels ops::AttentionKernels (ops/attention.h), run.gemm_epilogues
// ops::GemmEpilogues (ops/matmul.h), run.bf16_gemm ops::Bf16Gemm
// (ops/matmul.h) and run.metrics_priority SidePriority (core/device_runtime.h).
enum class PrecisionSetting { Auto, BF16, FP32 };     // run.precision (resolved_precision)
enum class CpuGemmSetting { Auto, OpenBLAS, Reference };  // run.cpu_gemm
enum class AttnOutputNorm { None, HeadwiseRmsNorm };  // model.attn_output_norm
enum class AttentionKind { Softmax, Sigmoid };        // model.attention
enum class GammaInit { FirstTokenStd, Ones };         // model.gamma_init
enum class AmplifyMode { Centered, Plain };           // model.amplify_mode
enum class AmplifySite { BeforeNorm, AfterNorm };     // model.amplify_site
enum class ValSplit { Documents, Tail };              // prepare.val_split
enum class VariantPlacement { Together, Split };      // run.variant_placement

// The YAML text of a choice key's value: choice_text(Arch::Llama) is "llama"; and back:
// choice_from_text<Arch>("llama"), nullopt for a text that names no value. Defined in config.cpp
// for each enum named above.
template <class E>
const char* choice_text(E value);
template <class E>
std::optional<E> choice_from_text(std::string_view text);

struct RunSection {
  std::string name = "run";         // runs/<name>/
  std::string out_dir = "runs";     // parent folder of run folders
  std::string device = "cpu";       // cpu | cuda | cuda:N
  PrecisionSetting precision = PrecisionSetting::Auto;  // auto (bf16 on cuda, fp32 on cpu) |
                                    // bf16 | fp32: how GPU kernels compute (core/precision.h);
                                    // storage stays fp32
  ops::AttentionKernels attention_kernels = ops::AttentionKernels::Auto;  // auto (cuDNN's fused
                                    // attention where it applies on a GPU) | own (sinklab's
                                    // kernels everywhere)
  uint64_t seed = 1337;             // init, data order, sampling
  // How the process runs (one value per process: a variant may not set them). They change
  // speed, or the last bits of the numbers, not the model; saved with the run like every key.
  bool profile = false;             // synchronise the device at every phase and op of a step and
                                    // print at the end where a step's time goes (per phase,
                                    // per op); slower
  double bucket_mib = 25;           // data parallel: gradients are averaged in buckets of about
                                    // this many MiB of whole parameters
  double collective_timeout_s = 600;  // data parallel: a rank that waits this long for the
                                    // others (to connect, or in a collective, NCCL or TCP) fails,
                                    // naming the operation
  ops::Bf16Gemm bf16_gemm = ops::Bf16Gemm::Rounded;  // GPU bf16 products of f32 operands:
                                    // rounded (each operand rounded to bf16 once, cuBLASLt, the
                                    // bias in its epilogue) | fast (cuBLAS converts them itself:
                                    // CUBLAS_COMPUTE_32F_FAST_16BF; for benchmarking)
  SidePriority metrics_priority = SidePriority::Low;  // the GPU stream of the sink metrics: low
                                    // (it fills the SMs training leaves idle) | equal (the
                                    // compute stream's priority; for benchmarking)
  CpuGemmSetting cpu_gemm = CpuGemmSetting::Auto;  // CPU products: auto (OpenBLAS when built
                                    // with it, else the own kernel) | openblas | reference (the
                                    // own blocked kernel: bit-exact comparisons with it; OpenBLAS
                                    // sums in another order)
  ops::GemmEpilogues gemm_epilogues = ops::GemmEpilogues::ForwardBiasGrad;  // GPU products
                                    // under bf16: GPT-2's GELU in cuBLASLt's epilogues instead
                                    // of passes of their own (ops/mlp.h): none | forward
                                    // (GELU_AUX_BIAS) | forward_bias_grad (also linear's bias
                                    // gradients, BGRADB; the default) | forward_backward (also
                                    // GELU's derivative, DGELU_BGRAD: faster on an H200, slower
                                    // on an H100)
  bool bias_grad_columns = true;   // with forward_bias_grad or more: the bias gradients summed by
                                    // the column-sum kernel from the bf16 gradient instead of in
                                    // cuBLASLt's BGRADB epilogue (a separate kernel on an H100;
                                    // ops/matmul.h); 0.4 to 0.7% faster on an H100 with
                                    // bf16_branch_outputs
  int64_t gemm_search = 8;         // GPU bf16 products: time up to N of cuBLASLt's candidate
                                    // algorithms on each shape's first call and keep the fastest
                                    // (ops/matmul.h): 0.4 to 2.9% faster on an H100 (thirtieth
                                    // session); 0: the heuristic's first (the same in every
                                    // process). The choices travel with checkpoints and stay in
                                    // the run folder for a fresh run of it
                                    // (train/io/gemm_choices_file.h); off with several processes
  bool fused_cross_entropy = true;  // the loss's gradient written in the forward's pass over
                                    // the logits (ops/cross_entropy.h): one read of the logits
                                    // fewer per step; the backward only scales it (0.1 to 1.0%
                                    // faster on an H100)
  bool fold_residual_grads = true;  // a norm's backward adds the residual stream's gradient at
                                    // its input in its own pass, instead of a separate add
                                    // (ops/add_norm.h): the same sums, one pass fewer per norm
  bool rope_in_place = true;        // LLaMA's RoPE rotates q and k over the product's output
                                    // (and over their gradient), leaving v where it lies
                                    // (ops/rope.h): no copy of v, the same bits (1.3 to 2.3%
                                    // faster on an H100)
  bool bf16_branch_outputs = true;   // the products whose output joins the residual stream
                                    // (o_proj / c_proj, down_proj) store it in bf16 under bf16
                                    // on a GPU, as autocast does (ops/add_norm.h): fewer bytes
                                    // for the add + norm; 0.8 to 1.3% faster on an H100
  bool fused_norm_param_grads = true;  // a GPU's norm backwards sum their parameters'
                                    // gradients in the pass that computes x's (ops/layernorm.h),
                                    // not in column sums that read dy and x again (1.3 to 2.1%
                                    // faster on an H100)
  bool flat_weight_operands = true;  // under bf16 on a GPU, a forward rounds the whole flat
                                    // parameter buffer to bf16 in one pass and the products
                                    // read their weights from that copy (ops/weight_operands.h),
                                    // instead of one rounding launch per weight (about 100 a
                                    // GPT-2 forward): the same bits; 0.1 to 0.7% faster on an
                                    // H100
  bool head_norm_statistics = false;  // the sink metrics' variance by position of the attention
                                    // output and of its head-wise norm from the norm's own pass
                                    // (ops/rmsnorm.h) instead of two more reads; off: no
                                    // faster on an H100 (the norm's kernel gets slower by
                                    // about what the two reads cost)
  bool one_pass_order_statistics = false;  // the sink metrics' residual: its row statistics
                                    // and its order statistics' brackets in one read on a GPU
                                    // (ops/statistics.h), instead of two; the same values; off:
                                    // no faster on an H100 (its sort and select cost more than
                                    // the pass they save)
  bool sigmoid_row_sums = true;     // sigmoid attention's metrics step: the training forward
                                    // sums each query's weights as it goes (ops::attention's
                                    // AttentionOptions::row_sums) and the sink metrics read
                                    // those sums, instead of a second attention over values of
                                    // ones; the training bits do not change (152M sigmoid
                                    // variant, metrics every step, one H200: 219 -> 163 ms a
                                    // step, 79 without metrics; twenty-seventh session)
  bool metrics_exchange_on_side = false;  // data parallel on GPUs: a metrics step's results
                                    // travel between the ranks on the metrics' side stream, as
                                    // they come to the host, so that the host does not wait for
                                    // the update on the compute stream (one GPU already fetches
                                    // there); off until measured on several GPUs
  bool cuda_graph = false;          // on a GPU, a training step without sink metrics (forward,
                                    // backward, clipping, AdamW) is recorded once as a CUDA
                                    // graph and replayed at every such step
                                    // (train/step_graph.h);
                                    // the same bits; off: no faster than the eager step on an
                                    // H100 (twenty-first session), it never applies when
                                    // metrics run every step, and with metrics every N steps a
                                    // micro-batch's activations are held twice (the graph's and
                                    // the pool's)
  bool deterministic = true;        // the same bits on every run (bit-exact resume on a GPU);
                                    // false lets cuDNN's attention backward sum dQ with f32
                                    // atomics (ops::deterministic_attention): faster, but two
                                    // runs may differ in the last bits
  bool release_forward_inputs = true;   // a graph node keeps, of an intermediate input, only
                                    // what the backward engine needs, so that one no backward
                                    // reads is freed in the forward (autograd::set_keep_inputs),
                                    // and the fused cross-entropy writes its gradient over the
                                    // logits (logits_after_loss): one (B, T, V) buffer fewer at
                                    // the loss's forward, where a step's memory peaks; the same
                                    // bits (GPT-2 at B=32 on an H200: peak 20.2 -> 16.0 GiB,
                                    // LLaMA-152M 23.5 -> 19.3 GiB). The NaN gradient norms of
                                    // sigmoid's metrics steps in the twenty-fifth session came
                                    // from a since-withdrawn change, not from this: on an H200
                                    // the same run gives the same finite bits either way
                                    // (scripts/check_sigmoid_release.sh, twenty-seventh session)
  VariantPlacement variant_placement = VariantPlacement::Together;  // a side-by-side run over
                                    // several ranks: together (every rank trains every variant
                                    // on its slice of the batch) | split (the ranks form one
                                    // group per variant, each variant data-parallel over its own
                                    // group: train/dist/variant_groups.h)
};

struct ModelSection {
  Arch arch = Arch::Gpt2;           // gpt2 (LayerNorm, learned positions, GELU, biases)
                                    // | llama (RMSNorm, RoPE, SwiGLU, no biases)
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_embd = 128;             // C; must be divisible by n_head
  int64_t ffn_hidden = 0;           // F; 0 = 4*C for gpt2, the LLaMA rule 2/3*4C rounded up to 64 for llama
  int64_t block_size = 128;         // T (max sequence length)
  int64_t vocab_size = 0;           // 0 = from the tokenizer, padded up to vocab_multiple
  int64_t vocab_multiple = 64;
  bool tie_embeddings = true;
  AttnOutputNorm attn_output_norm = AttnOutputNorm::None;  // none | headwise_rmsnorm
  AttentionKind attention = AttentionKind::Softmax;        // softmax | sigmoid
  GammaInit gamma_init = GammaInit::FirstTokenStd;  // first_token_std (0.02*sqrt(C)) | ones
  double gamma_init_scale = 1.0;    // multiplies gamma_init's value (ablations of its size)
  bool gamma_shared = false;        // one (HS) gamma for all heads instead of (NH, HS)
  bool gamma_weight_decay = true;   // the authors decay the 2-D per-head gamma
  double norm_eps = 0.0;            // 0 = 1e-5 for gpt2 LayerNorm, 1e-6 for llama RMSNorm
  double rope_theta = 10000.0;
  // SINKS.md interventions (usable in training and in `sinklab probe`):
  std::vector<int64_t> isolate_positions;  // query k attends only to itself (no keys < k)
  std::vector<int64_t> isolate_layers;     // layers where isolation applies; empty = all
  int64_t amplify_position = -1;           // k: o_k <- mu + lambda (o_k - mu); -1 = off
  double amplify_lambda = 1.0;             // lambda (1 = no change)
  std::vector<int64_t> amplify_layers;     // layers where it applies; empty = all
  AmplifyMode amplify_mode = AmplifyMode::Centered;  // centered (mu = detached mean value
                                           // vector of the layer over batch and positions) |
                                           // plain (lambda o_k, the paper's control)
  AmplifySite amplify_site = AmplifySite::BeforeNorm;  // before_norm: on the attention output
                                           // o (the paper's site) | after_norm: on head-wise
                                           // RMSNorm's output, the input to W_O, which the norm
                                           // cannot divide the factor out of (head-wise only)
  double init_std = 0.02;
};

struct DataSection {
  std::string dir = "data/quickstart";  // holds train_*.bin, val_*.bin and tokenizer.json
  std::string train_pattern = "train_*.bin";
  std::string val_pattern = "val_*.bin";
  std::string tokenizer = "";       // default <dir>/tokenizer.json (written by prepare); or
                                    // byte | gpt2 | hf:<tokenizer.json> | a tokenizer file
                                    // (train/data/tokenizer_spec.h): samples decode through it
  int64_t window_stride = 0;        // 0 = windows start at any offset (the paper: no BOS);
                                    // S > 0 = only at multiples of S: documents of S >= T + 1
                                    // tokens that begin with BOS (scripts/make_bigram_backcopy.py)
};

struct PrepareSection {  // used by `sinklab prepare <config>`
  std::vector<std::string> inputs;  // text files
  std::string tokenizer = "bpe";    // bpe (trained on inputs) | byte | gpt2 (GPT-2's 50,257;
                                    // scripts/get_data.sh installs it) | hf:<tokenizer.json>
  int64_t vocab_size = 512;         // BPE target vocabulary (>= 256 + special)
  double val_fraction = 0.05;       // share of each input held out for val (0: none, a folder
                                    // training cannot evaluate on; a share that rounds to no
                                    // text is refused)
  ValSplit val_split = ValSplit::Documents;  // documents: whole documents (blocks ending at a
                                    // blank line, "\r" alone counting as blank, joined to at
                                    // least val_unit_bytes) spread evenly across each input;
                                    // inputs with fewer than 1 / val_fraction units are counted
                                    // as one | tail: the input's last bytes
  int64_t val_unit_bytes = 16384;   // the smallest held-out unit (documents split)
  int64_t shard_tokens = 100000000; // tokens per shard file
};

struct TrainSection {
  int64_t steps = 200;
  int64_t batch_size = 8;           // B, sequences per micro-batch
  int64_t tokens_per_step = 0;      // 0 = B*T (no accumulation); must be a multiple of B*T
  int64_t log_every = 1;
  int64_t eval_every = 50;          // 0 = never (a final eval still runs)
  int64_t eval_batches = 4;
  int64_t sample_every = 0;         // 0 = only at the end
  int64_t sample_tokens = 32;
  double sample_temperature = 1.0;
  int64_t max_skipped_steps = 10;   // stop after this many non-finite loss/grad-norm steps in a row
};

struct OptimSection {
  double lr = 1e-3;                 // peak
  double min_lr = 1e-4;             // cosine floor
  int64_t warmup_steps = 20;
  int64_t decay_steps = 0;          // 0 = train.steps
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;        // matrices only (2-D params), embeddings included
  bool decay_embeddings = true;
  double grad_clip = 1.0;           // 0 = off
  bool zero1 = false;               // data parallel: shard the AdamW moments over the ranks
};

struct MetricsSection {
  int64_t every = 1;                // sink metrics period in steps (0 = off)
  int64_t effective_rank_every = 0; // read by nothing (the ranks come at eval steps); kept for
                                    // the configs stored in checkpoints; the trainer warns
                                    // when it is not 0
  double sink_threshold = 0.3;      // sink_rate threshold (Gu et al.)
  double onset_threshold = 0.8;     // sink onset: first layer whose sink_score passes it (paper)
  int64_t rank_sequences = 20;      // sequences of the output effective rank at eval (0 = off)
  bool order_statistics = true;     // the exact medians and top three of |x_l| and |u| at the
                                    // training steps' metrics (massive_median, massive_top,
                                    // super_ratio; NaN when false): the metrics' costliest passes
                                    // (docs/METRICS.md); evaluation computes them either way
  bool jsonl = true;                // <variant>/metrics.jsonl
  bool hdf5 = true;                 // <variant>/metrics.h5
  bool tensorboard = true;          // <variant>/events.out.tfevents.*.sinklab: the same scalars
                                    // for TensorBoard (docs/TENSORBOARD.md)
};

struct CheckpointSection {
  int64_t every = 0;                // 0 = only at the end
  int64_t keep_last = 3;
  int64_t keep_every = 0;           // also keep every M-th step (0 = none)
};

struct VariantSpec {
  std::string name;
  std::vector<std::string> overrides;  // "model.attn_output_norm=headwise_rmsnorm"
};

struct RunConfig {
  RunSection run;
  ModelSection model;
  DataSection data;
  PrepareSection prepare;
  TrainSection train;
  OptimSection optim;
  MetricsSection metrics;
  CheckpointSection checkpoint;
  std::vector<VariantSpec> variants;  // empty = a single run named "main"
  std::string source_file;            // the YAML file it came from (for messages)
};

// Loads `path`, applies `overrides` ("a.b=value", in order), validates. Throws ConfigError
// naming the key and the file on unknown keys, wrong types and impossible combinations.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same from YAML text (`origin` names it in messages).
RunConfig parse_config(const std::string& yaml_text, const std::string& origin,
                       const std::vector<std::string>& overrides = {});
// Applies one variant's overrides on top of a base config (variants list cleared), validates.
RunConfig apply_variant(const RunConfig& base, const VariantSpec& variant);
// The resolved config as YAML (every key, defaults filled); parse_config of it gives it back.
std::string to_yaml(const RunConfig& config);
// Throws ConfigError for impossible combinations (n_embd % n_head, tokens_per_step, ...).
void validate(const RunConfig& config);

// The keys of `section` ("model") whose values differ between a and b, in the table's order,
// each with its two values as YAML text.
struct KeyDifference {
  std::string key, a, b;
};
std::vector<KeyDifference> differing_keys(const RunConfig& a, const RunConfig& b,
                                          const std::string& section);

// A coarse estimate of the memory training `config` takes on one device, in bytes (computed in
// double: no value of any key overflows it). model.vocab_size 0 counts as model.vocab_multiple.
struct MemoryEstimate {
  double embedding_parameters = 0;  // token (and learned position) tables, the lm head if untied
  double layer_parameters = 0;      // the blocks
  double parameter_bytes = 0;       // fp32 weights, gradients and AdamW m and v: 16 bytes each
  double activation_bytes = 0;      // what one micro-batch keeps for the backward, and its logits
                                    // (bf16 values under bf16 precision on a GPU)
  // run.cuda_graph on a GPU with metrics every N > 1 steps: the recorded micro-batch's own
  // allocations (train/step_graph.h) beside the pool's, which the metrics steps use.
  double graph_bytes = 0;
  double total() const { return parameter_bytes + activation_bytes + graph_bytes; }
  // What the variant holds for the whole run, whatever else runs: everything but the pool's
  // activations (the parameters' bytes, and a recording's own allocations).
  double held_bytes() const { return parameter_bytes + graph_bytes; }
};
MemoryEstimate estimate_training_memory(const RunConfig& config);
// Variants side by side on one device: each holds its held_bytes() for the whole run, but they
// step one after another and each frees its micro-batch's activations (and its metrics'
// captures) before the next one's forward, so the pool reuses one set: the largest variant's
// activation_bytes count once. One variant: its total().
double side_by_side_bytes(const std::vector<MemoryEstimate>& variants);
// Throws ConfigError naming the size keys when `needed_bytes` (the run's estimates, all variants)
// exceed `device_bytes` (0 or NaN = unknown: no check). `device` names it ("cpu (RAM)");
// `variants`: how many variants needed_bytes counts (one device holds them all, as
// side_by_side_bytes counts them), named in the message with the figures and the ways to train
// them apart.
void check_fits_in_memory(const RunConfig& config, double needed_bytes, double device_bytes,
                          const std::string& device, int variants = 1);
// "1.5 GiB"
std::string format_bytes(double bytes);

// run.precision resolved against run.device: auto is BF16 on a GPU, Exact (fp32) on the CPU.
Precision resolved_precision(const RunSection& run);

}  // namespace sinklab::train
