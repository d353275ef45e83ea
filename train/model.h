// The GPT family: GPT-2 style (LayerNorm, learned positions, GELU, biases) and LLaMA style
// (RMSNorm, RoPE, SwiGLU, no biases), with the attention-output variant of SINKS.md
// (none | head-wise RMSNorm) and optional sigmoid attention. Parameters carry Hugging Face names;
// linear weights are stored (out, in) as in nn.Linear (GPT-2's Conv1D is transposed on export).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/add_norm.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "train/arch.h"
#include "train/config.h"
#include "train/parameters.h"

namespace sinklab::train {

// The epsilon of head-wise RMSNorm on each head's attention output (docs/SINKS.md): the
// authors' value, whatever model.norm_eps sets for the blocks' own norms.
inline constexpr double kHeadwiseRmsNormEps = 1e-6;

// What the sink metrics need from one forward pass, per layer (detached, no graph).
struct LayerCapture {
  Tensor residual;        // (B, T, C) x_l, the residual stream entering layer l
  Tensor residual_normed; // (B, T, C) the block's input norm of x_l, what attention reads
  Tensor q, k;            // (B, T, NH, HS) as attention saw them (after RoPE)
  Tensor lse;             // (B, NH, T) log-sum-exp of attention (undefined for sigmoid)
  // (B, NH, T) sigmoid attention's row sums sum_k A[t, k], summed by its forward (undefined
  // for softmax, and without run.sigmoid_row_sums: the metrics then run attention_row_means)
  Tensor row_sums;
  Tensor v;               // (B, T, NH, HS) the values attention multiplied (a view for GPT-2)
  Tensor attn_out;        // (B, T, NH, HS) o before head-wise RMSNorm
  Tensor attn_out_normed; // (B, T, NH, HS) o after head-wise RMSNorm (undefined when off)
  // (B, T, NH, 5) the row statistics of each head of o and of attn_out_normed, written by the
  // head-wise norm's own pass (ops::NormRowStatistics; undefined without head-wise RMSNorm or
  // run.head_norm_statistics)
  Tensor attn_out_head_rows, attn_out_normed_head_rows;
  Tensor ffn_hidden;      // (B, T, F) u = act(W1 x) * (W3 x), or GELU(W_fc x + b) (GPU bf16: bf16)
  ops::AttentionOptions attention;  // the layer's attention as it ran (mode, isolate mask)
};
struct ForwardCapture {
  std::vector<LayerCapture> layers;
  Tensor final_residual;  // (B, T, C) after the last block, before the final norm
};

struct ForwardResult {
  Tensor loss;    // () mean cross-entropy (undefined when no targets)
  Tensor logits;  // (B, T, V); bf16 under bf16 precision on a GPU (loss stays f32); undefined
                  // under CrossEntropyLogits::kOverwritten
};

class GPT {
 public:
  // cfg must be validated and have vocab_size > 0 (resolved from the tokenizer). initial:
  // InitialValues::Zeros for a model whose weights are loaded next (load_weights), which then
  // skips drawing the random init.
  GPT(const ModelSection& cfg, uint64_t seed, DType dtype = DType::F32,
      Device device = Device::cpu(), InitialValues initial = InitialValues::Drawn);
  // The model of cfg over the parameters of `weights`, the same storage (nothing drawn or
  // copied), gradients included: for reading only (forwards without gradients), e.g. the
  // probe's models with and without interventions; a step or a backward through one changes
  // every model that shares them. cfg must build the same parameters (names, shapes, order);
  // ValueError naming the first that differs otherwise.
  GPT(const ModelSection& cfg, const GPT& weights);

  // ids, targets: (B, T) int32 with T <= block_size; targets may be undefined. logits_after:
  // kOverwritten lets the loss write its gradient over the logits (ops::cross_entropy), and
  // result.logits is then left undefined (a training step's forward, which reads the loss only).
  ForwardResult forward(
      const Tensor& ids, const Tensor& targets, ForwardCapture* capture = nullptr,
      ops::CrossEntropyLogits logits_after = ops::CrossEntropyLogits::kKept) const;

  // The amplify intervention's mu per layer, (NH * HS) values each, precomputed (the paper's
  // procedure: over uniform-random tokens, train/paper_metrics.h; at model.amplify_site
  // after_norm the mean of head-wise RMSNorm's output instead of the value vectors'); an empty
  // list (the default) takes mu from the current batch.
  void set_amplify_mean(std::vector<std::vector<double>> mu) { amplify_mean_ = std::move(mu); }
  ParameterSet& params() { return params_; }
  const ParameterSet& params() const { return params_; }
  const ModelSection& config() const { return cfg_; }
  int64_t head_size() const { return cfg_.n_embd / cfg_.n_head; }
  int64_t ffn_width() const;
  // Training FLOPs per token (6N + attention), for MFU.
  double flops_per_token(int64_t seq_len) const;
  // The parameter specs (names, shapes, init, decay) this config builds.
  static std::vector<ParamSpec> parameter_specs(const ModelSection& cfg);
  static int64_t resolved_ffn_width(const ModelSection& cfg);
  static double resolved_norm_eps(const ModelSection& cfg);

 private:
  // The residual stream entering a block and its norm for the block's attention (for the final
  // norm after the last block). Each block adds its sublayers' outputs and normalises the sums
  // in one op (ops::add_layernorm / add_rmsnorm).
  struct Stream {
    Tensor x;  // (B, T, C)
    Tensor h;  // (B, T, C) the norm of x that reads it next
  };
  // The attention options of cfg before the per-layer choices (attention_options).
  static ops::AttentionOptions base_attention_options(const ModelSection& cfg);
  Stream block(int64_t layer, const Stream& in, LayerCapture* capture) const;
  // The prefix of the norm that reads the stream entering `layer` (layer == n_layer: the final).
  std::string input_norm(int64_t layer) const;
  ops::AddNorm add_norm(const std::string& prefix, const Tensor& x, const Tensor& delta) const;
  // The dtype of the products whose output joins the residual stream (ops::bf16_branch_outputs).
  static ops::LinearOutput branch_output();
  Tensor attention_block(int64_t layer, const Tensor& h, LayerCapture* capture) const;
  Tensor ffn_block(int64_t layer, const Tensor& h, LayerCapture* capture) const;
  Tensor norm(const std::string& prefix, const Tensor& x) const;
  // The layer's attention options: the isolate mask only in model.isolate_layers (all if empty).
  ops::AttentionOptions attention_options(int64_t layer) const;
  // SINKS.md "amplify variance" at model.amplify_position in model.amplify_layers (identity
  // elsewhere): o_k <- mu + lambda (o_k - mu) (centered) or lambda o_k (plain); o and
  // mean_source (B, T, NH, HS): without a precomputed mu, mu is mean_source's mean over batch and
  // positions (the value vectors before the norm, o itself after it). f32 where o is bf16.
  Tensor amplify(int64_t layer, const Tensor& o, const Tensor& mean_source) const;
  const Tensor& p(const std::string& name) const { return params_[name]; }
  std::string layer_prefix(int64_t layer) const;
  Tensor bias(const std::string& prefix) const;  // <prefix>bias, or none without biases
  // The weights of the named products of one block (prefix + name + "weight", each (N_i, K))
  // as one (sum N_i, K) leaf: LLaMA's q, k, v and its gate, up (ParameterSet::packed).
  Tensor stacked_weight(const std::string& prefix, std::initializer_list<const char*> names) const;

  ModelSection cfg_;
  const ArchDescription& arch_;
  ParameterSet params_;
  ops::AttentionOptions attn_options_;
  std::vector<std::vector<double>> amplify_mean_;  // (L, NH * HS) or empty: see set_amplify_mean
};

}  // namespace sinklab::train
