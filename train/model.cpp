#include "train/model.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "ops/activations.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/rmsnorm.h"
#include "ops/statistics.h"
#include "ops/rope.h"
#include "ops/shape_ops.h"
#include "ops/weight_operands.h"

namespace sinklab::train {

namespace {
bool headwise(const ModelSection& cfg) {
  return cfg.attn_output_norm == AttnOutputNorm::HeadwiseRmsNorm;
}
Tensor detached(const Tensor& t) { return t.detach(); }
}  // namespace

int64_t GPT::resolved_ffn_width(const ModelSection& cfg) {
  if (cfg.ffn_hidden > 0) return cfg.ffn_hidden;
  if (arch_description(cfg.arch).ffn == FfnKind::Gelu) return 4 * cfg.n_embd;
  const int64_t f = (2 * 4 * cfg.n_embd + 2) / 3;  // SwiGLU: 2/3 of 4C, rounded up to 64
  return (f + 63) / 64 * 64;
}

double GPT::resolved_norm_eps(const ModelSection& cfg) {
  if (cfg.norm_eps > 0) return cfg.norm_eps;
  return arch_description(cfg.arch).norm_eps;
}

std::vector<ParamSpec> GPT::parameter_specs(const ModelSection& cfg) {
  const int64_t C = cfg.n_embd, V = cfg.vocab_size, F = resolved_ffn_width(cfg);
  const int64_t NH = cfg.n_head, HS = C / NH;
  const double std = cfg.init_std;
  const double residual_std = std / std::sqrt(2.0 * cfg.n_layer);  // output projections
  SINKLAB_CHECK(V > 0, ValueError, "model.vocab_size is " << V,
                "resolve the vocabulary from the tokenizer before building the model");
  std::vector<ParamSpec> specs;
  auto matrix = [&](std::string name, Shape shape, double s) {
    specs.push_back({std::move(name), std::move(shape), Init::Normal, s, true, false});
  };
  auto vector = [&](std::string name, int64_t n, Init init) {
    specs.push_back({std::move(name), {n}, init, 0.0, false, false});
  };
  auto head_norm = [&](const std::string& prefix) {
    if (!headwise(cfg)) return;
    Shape shape = cfg.gamma_shared ? Shape{HS} : Shape{NH, HS};
    const bool ones = cfg.gamma_init == GammaInit::Ones;
    const double value =
        cfg.gamma_init_scale * (ones ? 1.0 : 0.02 * std::sqrt(static_cast<double>(C)));
    specs.push_back({prefix + "head_norm.weight", shape, Init::Constant, value,
                     cfg.gamma_weight_decay && shape.size() == 2, false});
  };
  const ArchDescription& arch = arch_description(cfg.arch);
  const std::string name_of_layers = arch.layers;
  // A norm's weight (ones) and, with biases, its bias (zeros).
  auto norm = [&](const std::string& prefix) {
    vector(prefix + "weight", C, Init::Ones);
    if (arch.biases) vector(prefix + "bias", C, Init::Zeros);
  };
  // A product's (rows, C or F) weight and, with biases, its (rows) bias.
  auto linear = [&](const std::string& prefix, Shape shape, double s) {
    const int64_t rows = shape[0];
    matrix(prefix + "weight", std::move(shape), s);
    if (arch.biases) vector(prefix + "bias", rows, Init::Zeros);
  };
  specs.push_back({arch.token_embedding, {V, C}, Init::Normal, std, true, true});
  if (arch.positions == PositionKind::Learned)
    specs.push_back({arch.position_embedding, {cfg.block_size, C}, Init::Normal, std, true, true});
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string pre = name_of_layers + std::to_string(l) + ".";
    const std::string attn = pre + arch.attn, mlp = pre + arch.mlp;
    norm(pre + arch.attn_norm);
    if (arch.qkv == QkvKind::Packed) {
      linear(attn + arch.qkv_proj, {3 * C, C}, std);
    } else {
      linear(attn + arch.q_proj, {C, C}, std);
      linear(attn + arch.k_proj, {C, C}, std);
      linear(attn + arch.v_proj, {C, C}, std);
    }
    head_norm(attn);
    linear(attn + arch.attn_out, {C, C}, residual_std);
    norm(pre + arch.ffn_norm);
    if (arch.ffn == FfnKind::SwiGlu) {
      linear(mlp + arch.gate, {F, C}, std);
      linear(mlp + arch.up, {F, C}, std);
    } else {
      linear(mlp + arch.fc, {F, C}, std);
    }
    linear(mlp + arch.mlp_out, {C, F}, residual_std);
  }
  norm(arch.final_norm);
  if (!cfg.tie_embeddings) matrix("lm_head.weight", {V, C}, std);
  return specs;
}

GPT::GPT(const ModelSection& cfg, uint64_t seed, DType dtype, Device device,
         InitialValues initial)
    : cfg_(cfg), arch_(arch_description(cfg.arch)),
      params_(parameter_specs(cfg), seed, dtype, device, initial),
      attn_options_(base_attention_options(cfg)) {}

GPT::GPT(const ModelSection& cfg, const GPT& weights)
    : cfg_(cfg), arch_(arch_description(cfg.arch)), params_(weights.params_),
      attn_options_(base_attention_options(cfg)) {
  const std::vector<ParamSpec> specs = parameter_specs(cfg);
  const std::vector<Param>& shared = params_.params();
  SINKLAB_CHECK(specs.size() == shared.size(), ValueError,
                "GPT: this config builds " << specs.size() << " parameters, the model whose "
                "weights it would share has " << shared.size(),
                "share weights only between configs of one architecture and size (e.g. with "
                "and without interventions)");
  for (size_t i = 0; i < specs.size(); ++i)
    SINKLAB_CHECK(specs[i].name == shared[i].spec.name && specs[i].shape == shared[i].spec.shape,
                  ValueError,
                  "GPT: parameter " << i << " of this config is " << specs[i].name << " "
                                    << shape_str(specs[i].shape) << ", the shared model's "
                                    << shared[i].spec.name << " "
                                    << shape_str(shared[i].spec.shape),
                  "share weights only between configs of one architecture and size (e.g. "
                  "with and without interventions)");
}

ops::AttentionOptions GPT::base_attention_options(const ModelSection& cfg) {
  ops::AttentionOptions o;
  o.sigmoid = cfg.attention == AttentionKind::Sigmoid;
  o.isolate_positions = cfg.isolate_positions;
  return o;
}

namespace {
bool listed(const std::vector<int64_t>& layers, int64_t layer) {
  return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}
}  // namespace

ops::AttentionOptions GPT::attention_options(int64_t layer) const {
  ops::AttentionOptions o = attn_options_;
  if (!listed(cfg_.isolate_layers, layer)) o.isolate_positions.clear();
  return o;
}

Tensor GPT::amplify(int64_t layer, const Tensor& o_in, const Tensor& mean_source) const {
  const int64_t k = cfg_.amplify_position;
  if (k < 0 || cfg_.amplify_lambda == 1.0 || !listed(cfg_.amplify_layers, layer)) return o_in;
  const int64_t B = o_in.size(0), T = o_in.size(1), NH = o_in.size(2), HS = o_in.size(3);
  if (k >= T) return o_in;
  // The intervention's arithmetic in f32 (attention's out is bf16 where cuDNN wrote it).
  const Tensor o = o_in.dtype() == DType::BF16 ? ops::to_dtype(o_in, DType::F32) : o_in;
  // (lambda - 1) at position k, 0 elsewhere: (T, NH, HS), broadcast over the batch.
  std::vector<double> at_k(T * NH * HS, 0.0);
  std::fill(at_k.begin() + k * NH * HS, at_k.begin() + (k + 1) * NH * HS,
            cfg_.amplify_lambda - 1.0);
  Tensor mask = Tensor::from_doubles(at_k, {T, NH, HS}, o.dtype()).to_device(o.device());
  if (cfg_.amplify_mode == AmplifyMode::Plain)  // o_k <- lambda o_k (the control)
    return ops::add(o, ops::mul(o, mask));
  // mu: the layer's mean of mean_source over batch and positions, detached: (NH, HS); or the
  // precomputed one (set_amplify_mean).
  Tensor mu;
  if (layer < static_cast<int64_t>(amplify_mean_.size())) {
    SINKLAB_CHECK(static_cast<int64_t>(amplify_mean_[layer].size()) == NH * HS, ShapeError,
                  "amplify: the precomputed mean of layer " << layer << " has "
                      << amplify_mean_[layer].size() << " values, the layer's values " << NH * HS,
                  "precompute it with the same model (paper_metrics: random_token_value_means)");
    mu = Tensor::from_doubles(amplify_mean_[layer], {NH, HS}, o.dtype()).to_device(o.device());
  } else {
    autograd::NoGradGuard no_grad;
    Tensor ones = Tensor::empty({1, B * T}, o.dtype(), o.device());  // (1, B*T)
    ones.fill(1.0);
    // mean_source as it was computed (v: a view of the packed qkv, bf16 on a GPU under bf16),
    // channels by rows: the sums through linear, which reads a bf16 x as it is (the ones are
    // exact in bf16, the sums f32), then the mean in o's dtype. (A weight of 1/(B*T) would be
    // rounded to bf16 as a product operand: a bias of up to 2^-9 in mu.)
    const Tensor channels = mean_source.detach().copy_contiguous()
                                .reshape_view({B * T, NH * HS})
                                .transpose_view(0, 1)
                                .copy_contiguous();  // (C, B*T)
    mu = ops::scale(ops::linear(channels, ones), 1.0 / static_cast<double>(B * T))
             .reshape_view({NH, HS});
  }
  Tensor centered = ops::add(o, ops::scale(mu, -1.0));  // o - mu
  return ops::add(o, ops::mul(centered, mask));          // o_k + (lambda - 1)(o_k - mu)
}

int64_t GPT::ffn_width() const { return resolved_ffn_width(cfg_); }

double GPT::flops_per_token(int64_t seq_len) const {
  double n = static_cast<double>(params_.numel());
  if (arch_.positions == PositionKind::Learned)  // a table lookup, not a product
    n -= static_cast<double>(params_[arch_.position_embedding].numel());
  return 6.0 * n + 12.0 * cfg_.n_layer * cfg_.n_embd * seq_len;
}

Tensor GPT::bias(const std::string& prefix) const {
  return arch_.biases ? p(prefix + "bias") : Tensor();
}

Tensor GPT::stacked_weight(const std::string& prefix,
                           std::initializer_list<const char*> names) const {
  SINKLAB_CHECK(!arch_.biases, ValueError,
                "model: " << prefix << " stacks products that have biases",
                "stack only bias-free products (a bias lies between two weights in the buffers)");
  std::vector<std::string> full;
  for (const char* name : names) full.push_back(prefix + name + "weight");
  Tensor w = params_.packed(full);
  SINKLAB_CHECK(w.defined(), ValueError,
                "model: the weights " << full.front() << " ... " << full.back()
                                      << " do not lie next to each other with equal widths",
                "parameter_specs must list a block's stacked products one after another");
  return w;
}

std::string GPT::layer_prefix(int64_t layer) const {
  return arch_.layers + std::to_string(layer) + ".";
}

std::string GPT::input_norm(int64_t layer) const {
  if (layer >= cfg_.n_layer) return arch_.final_norm;
  return layer_prefix(layer) + arch_.attn_norm;
}

ops::LinearOutput GPT::branch_output() {
  // A branch's output (o_proj / c_proj, down_proj) is read only by the add + norm after it:
  // bf16 under bf16 on a GPU with run.bf16_branch_outputs, as autocast stores it.
  return ops::bf16_branch_outputs ? ops::LinearOutput::kOperandDType
                                  : ops::LinearOutput::kWeightDType;
}

ops::AddNorm GPT::add_norm(const std::string& prefix, const Tensor& x, const Tensor& delta) const {
  const double eps = resolved_norm_eps(cfg_);
  // Each norm's output feeds products only (q/k/v or c_attn, gate/up or c_fc, the lm head), so
  // it is stored as the products read it: bf16 under bf16 on a GPU, as autocast's cast, without
  // the pass.
  if (arch_.norm == NormKind::RmsNorm)
    return ops::add_rmsnorm(x, delta, p(prefix + "weight"), eps, ops::NormOutput::kOperandDType);
  return ops::add_layernorm(x, delta, p(prefix + "weight"), p(prefix + "bias"), eps,
                            ops::NormOutput::kOperandDType);
}

Tensor GPT::norm(const std::string& prefix, const Tensor& x) const {
  const double eps = resolved_norm_eps(cfg_);
  if (arch_.norm == NormKind::RmsNorm)
    return ops::rmsnorm(x, p(prefix + "weight"), eps, ops::NormOutput::kOperandDType);
  return ops::layernorm(x, p(prefix + "weight"), p(prefix + "bias"), eps,
                        ops::NormOutput::kOperandDType);  // as in add_norm
}

Tensor GPT::attention_block(int64_t layer, const Tensor& h, LayerCapture* capture) const {
  const int64_t B = h.size(0), T = h.size(1), C = cfg_.n_embd, NH = cfg_.n_head;
  const std::string pre = layer_prefix(layer);
  const std::string attn = pre + arch_.attn;
  ops::AttentionOptions options = attention_options(layer);
  // A metrics forward of sigmoid attention with run.sigmoid_row_sums: the forward also sums
  // each row's weights, which the sink metrics read (LayerCapture::row_sums).
  options.row_sums = capture && options.sigmoid && ops::sigmoid_row_sums;
  // One product writes q, k, v side by side in each row (GPT-2's c_attn; LLaMA's q_proj, k_proj,
  // v_proj stacked as one (3C, C) weight), in bf16 under bf16 on a GPU (as autocast stores it).
  // RoPE rotates q and k in one pass over it; attention reads them where they lie and its
  // gradient comes back as one (B, T, 3C) tensor: one product in backward, nothing split or
  // summed.
  Tensor qkv;  // (B, T, 3C)
  if (arch_.qkv == QkvKind::Separate) {
    const Tensor w = stacked_weight(attn, {arch_.q_proj, arch_.k_proj, arch_.v_proj});  // (3C, C)
    qkv = ops::linear(h, w, Tensor(), Tensor(), ops::LinearOutput::kOperandDType);
  } else {
    const std::string proj = attn + arch_.qkv_proj;
    qkv = ops::linear(h, p(proj + "weight"), bias(proj), Tensor(),
                      ops::LinearOutput::kOperandDType);
  }
  // RoPE over the product's output, which nothing else reads, with run.rope_in_place
  if (arch_.positions == PositionKind::Rope)
    qkv = ops::rope_qkv(std::move(qkv), NH, cfg_.rope_theta);
  Tensor lse;  // (B, NH, T): softmax's log-sum-exp, or sigmoid's row sums (options.row_sums)
  Tensor o = ops::attention_qkv(qkv, NH, options, &lse);  // (B, T, NH, HS)
  // q, k, v as attention multiplied them (after RoPE): (B, T, NH, HS) views of qkv
  const Tensor parts = qkv.detach();
  const Tensor q = ops::qkv_part(parts, NH, 0), k = ops::qkv_part(parts, NH, 1),
               v = ops::qkv_part(parts, NH, 2);
  const bool after_norm = cfg_.amplify_site == AmplifySite::AfterNorm && headwise(cfg_);
  if (!after_norm) o = amplify(layer, o, v);  // (B, T, NH, HS)
  // The head-wise norm's output only feeds o_proj: stored as the product reads it (bf16 under
  // bf16 on a GPU), as the block norms' outputs are.
  // (It reads o as it comes: bf16 where cuDNN wrote it, f32 after amplify; its math in f32.)
  // On a metrics forward with run.head_norm_statistics it also leaves each head's row
  // statistics of o and of its output, so that the metrics read neither again.
  ops::NormRowStatistics head_rows;
  Tensor o_normed = headwise(cfg_) ? ops::headwise_rmsnorm(o, p(attn + "head_norm.weight"),
                                                             kHeadwiseRmsNormEps,
                                                             ops::NormOutput::kOperandDType,
                                                             // after the norm the intervention
                                                             // changes what the statistics saw
                                                             capture && ops::head_norm_statistics &&
                                                                     !after_norm
                                                                 ? &head_rows
                                                                 : nullptr)
                                   : Tensor();
  // After the norm (model.amplify_site): on the input to W_O, which o_proj reads as it comes.
  if (after_norm) o_normed = amplify(layer, o_normed, o_normed);  // (B, T, NH, HS)
  if (capture) {
    capture->q = detached(q);
    capture->k = detached(k);
    const Tensor row = lse.defined() ? detached(lse) : Tensor();  // (B, NH, T)
    capture->lse = options.sigmoid ? Tensor() : row;
    capture->row_sums = options.sigmoid ? row : Tensor();
    capture->v = detached(v);
    capture->attn_out = detached(o);
    capture->attn_out_normed = o_normed.defined() ? detached(o_normed) : Tensor();
    if (head_rows.input.defined()) {
      const Shape heads{B, T, NH, ops::kRowStats};
      capture->attn_out_head_rows = head_rows.input.reshape_view(heads);
      capture->attn_out_normed_head_rows = head_rows.output.reshape_view(heads);
    }
    capture->attention = options;
  }
  Tensor merged = ops::reshape(o_normed.defined() ? o_normed : o, {B, T, C});  // (B, T, C)
  const std::string out = attn + arch_.attn_out;
  return ops::linear(merged, p(out + "weight"), bias(out), Tensor(), branch_output());
}

Tensor GPT::ffn_block(int64_t layer, const Tensor& h, LayerCapture* capture) const {
  const std::string pre = layer_prefix(layer) + arch_.mlp;
  Tensor u;  // (B, T, F)
  if (arch_.ffn == FfnKind::SwiGlu) {
    // gate and up as one product (their (F, C) weights stacked as (2F, C)), written once in
    // bf16 under bf16 on a GPU; swiglu_packed reads gate | up from each row and writes bf16,
    // and down_proj reads u as its operand: as autocast stores them. Backward: one (B, T, 2F)
    // gradient, one product for h's gradient.
    const Tensor w = stacked_weight(pre, {arch_.gate, arch_.up});  // (2F, C)
    u = ops::swiglu_packed(
        ops::linear(h, w, Tensor(), Tensor(), ops::LinearOutput::kOperandDType));  // (B, T, F)
  } else {
    // c_fc, GELU and c_proj as one op (ops/mlp.h): under bf16 on a GPU c_fc writes its
    // pre-activation and GELU's output once in bf16 (GELU in the product's epilogue with
    // run.gemm_epilogues), and c_proj's backward product applies GELU's derivative.
    const std::string fc = pre + arch_.fc, out = pre + arch_.mlp_out;
    ops::GeluMlp mlp = ops::gelu_mlp(h, p(fc + "weight"), bias(fc), p(out + "weight"), bias(out),
                                     branch_output());
    if (capture) capture->ffn_hidden = detached(mlp.hidden);
    return mlp.y;
  }
  if (capture) capture->ffn_hidden = detached(u);
  const std::string out = pre + arch_.mlp_out;
  return ops::linear(u, p(out + "weight"), bias(out), Tensor(), branch_output());
}

GPT::Stream GPT::block(int64_t layer, const Stream& in, LayerCapture* capture) const {
  if (capture) {
    capture->residual = detached(in.x);
    capture->residual_normed = detached(in.h);
  }
  const std::string mid = layer_prefix(layer) + arch_.ffn_norm;
  const ops::AddNorm x1 = add_norm(mid, in.x, attention_block(layer, in.h, capture));
  const ops::AddNorm x2 =
      add_norm(input_norm(layer + 1), x1.sum, ffn_block(layer, x1.normed, capture));
  return {x2.sum, x2.normed};
}

ForwardResult GPT::forward(const Tensor& ids_in, const Tensor& targets_in,
                           ForwardCapture* capture, ops::CrossEntropyLogits logits_after) const {
  // Token ids come from the (CPU) data loader: move them next to the weights.
  const Device device = params_.flat_values().device();
  const Tensor ids = ids_in.defined() ? ids_in.to_device(device) : ids_in;
  const Tensor targets = targets_in.defined() ? targets_in.to_device(device) : targets_in;
  check_dtype(ids, DType::I32, "GPT.forward", "ids");
  check_rank(ids, 2, "GPT.forward", "ids");
  const int64_t T = ids.size(1);
  SINKLAB_CHECK(T <= cfg_.block_size, ShapeError,
                "GPT.forward: sequence length " << T << " exceeds model.block_size "
                                                << cfg_.block_size,
                "feed at most block_size tokens");
  // run.flat_weight_operands: the weights' bf16 operands from one rounding pass
  // (ops/weight_operands.h).
  const ops::WeightOperandScope weight_operands(
      params_.flat_values(),
      ops::flat_weight_operands && ops::rounds_to_operand(params_.flat_values()));
  Tensor x = ops::embedding(ids, p(arch_.token_embedding));  // (B, T, C)
  if (arch_.positions == PositionKind::Learned) {
    Tensor table = ops::narrow(p(arch_.position_embedding), 0, 0, T);  // (T, C)
    x = ops::add(x, ops::contiguous(table));
  }
  if (capture) capture->layers.assign(cfg_.n_layer, LayerCapture{});
  Stream s{x, norm(input_norm(0), x)};
  for (int64_t l = 0; l < cfg_.n_layer; ++l)
    s = block(l, s, capture ? &capture->layers[l] : nullptr);
  if (capture) capture->final_residual = detached(s.x);
  x = s.h;  // the final norm of the last block's output
  const Tensor& head = cfg_.tie_embeddings
                           ? p(arch_.token_embedding)
                           : p("lm_head.weight");
  ForwardResult result;
  // (B, T, V); bf16 under bf16 precision on a GPU: cross_entropy reads them, summing in f32
  result.logits = ops::linear(x, head, Tensor(), Tensor(), ops::LinearOutput::kOperandDType);
  if (targets.defined())
    result.loss = ops::cross_entropy(result.logits, targets, -1, logits_after);
  if (logits_after == ops::CrossEntropyLogits::kOverwritten) result.logits = Tensor();
  return result;
}

}  // namespace sinklab::train
