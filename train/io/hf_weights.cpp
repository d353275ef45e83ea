#include "train/io/hf_weights.h"

#include <set>
#include <sstream>

#include "core/error.h"
#include "train/arch.h"
#include "train/model.h"

namespace sinklab::train {

namespace {

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_conv1d(const std::string& name) {  // GPT-2's Conv1D weights, stored (in, out) by HF
  return name.rfind("transformer.h.", 0) == 0 &&
         (ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_proj.weight") ||
          ends_with(name, "mlp.c_fc.weight") || ends_with(name, "mlp.c_proj.weight"));
}

// Buffers, not parameters, that some transformers versions saved.
bool is_saved_buffer(const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
         ends_with(name, "rotary_emb.inv_freq");
}

std::string shape_text(const Shape& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

Tensor to_f32_cpu(const Tensor& t) {
  Tensor cpu = t.to_device(Device::cpu());
  return cpu.dtype() == DType::F32 ? cpu : cpu.to_dtype(DType::F32);
}

}  // namespace

NamedTensors to_hf_state_dict(const NamedTensors& params) {
  NamedTensors out;
  for (const auto& [name, value] : params) {
    Tensor host = to_f32_cpu(value);
    out.push_back({name, is_conv1d(name) ? host.transpose_view(0, 1).copy_contiguous() : host});
  }
  return out;
}

NamedTensors from_hf_state_dict(std::map<std::string, Tensor> tensors, const ModelSection& model,
                                const std::string& origin) {
  // The original GPT-2 port names its tensors without the "transformer." prefix.
  const ArchDescription& arch = arch_description(model.arch);
  if (arch.ffn == FfnKind::Gelu && !tensors.count(arch.token_embedding) &&
      tensors.count("wte.weight")) {
    std::map<std::string, Tensor> renamed;
    for (auto& [name, value] : tensors)
      renamed[name == "lm_head.weight" ? name : "transformer." + name] = value;
    tensors = std::move(renamed);
  }
  NamedTensors out;
  std::set<std::string> used;
  for (const ParamSpec& spec : GPT::parameter_specs(model)) {
    auto it = tensors.find(spec.name);
    SINKLAB_CHECK(it != tensors.end(), ConfigError,
                  origin << " has no tensor " << spec.name << " " << shape_text(spec.shape)
                         << ", which a " << choice_text(model.arch)
                         << " model with this config.json needs",
                  "the weights and config.json disagree, or the file has another layout "
                  "(sinklab imports GPT2LMHeadModel and LlamaForCausalLM)");
    Tensor value = to_f32_cpu(it->second);
    if (is_conv1d(spec.name)) {
      SINKLAB_CHECK(value.dim() == 2, ConfigError,
                    origin << ": tensor " << spec.name << " has shape " << shape_text(value.shape())
                           << "; a Conv1D weight is a matrix",
                    "the file has another layout");
      value = value.transpose_view(0, 1).copy_contiguous();
    }
    SINKLAB_CHECK(value.shape() == spec.shape, ConfigError,
                  origin << ": tensor " << spec.name << " has shape "
                         << shape_text(it->second.shape()) << " but the model needs "
                         << shape_text(spec.shape)
                         << (is_conv1d(spec.name) ? " (transposed: a Conv1D weight is (in, out))"
                                                  : ""),
                  "the weights and config.json disagree");
    out.push_back({spec.name, value});
    used.insert(spec.name);
  }
  for (const auto& [name, value] : tensors) {
    if (used.count(name) || is_saved_buffer(name)) continue;
    if (name == "lm_head.weight" && model.tie_embeddings) {
      // Stored although tied: fine when it is the embedding.
      const Tensor head = to_f32_cpu(value);
      const Tensor& embedding = tensors.at(arch.token_embedding);
      SINKLAB_CHECK(head.shape() == embedding.shape() &&
                        head.to_doubles() == to_f32_cpu(embedding).to_doubles(),
                    ConfigError,
                    origin << ": lm_head.weight differs from " << arch.token_embedding
                           << " but config.json says tie_word_embeddings: true",
                    "set tie_word_embeddings to false in config.json");
      continue;
    }
    SINKLAB_FAIL(ConfigError,
                 origin << " holds tensor " << name << " " << shape_text(value.shape())
                        << ", which a " << choice_text(model.arch)
                        << " model with this config.json has not",
                 "the file has another layout or config.json is not its own (sinklab imports "
                 "GPT2LMHeadModel and LlamaForCausalLM)");
  }
  return out;
}

void load_weights(ParameterSet& params, const NamedTensors& weights, const std::string& origin) {
  std::set<std::string> given;
  for (const auto& [name, value] : weights) {
    SINKLAB_CHECK(params.contains(name), ConfigError,
                  origin << " holds " << name << ", which the model has not",
                  "the weights and the model's config disagree");
    SINKLAB_CHECK(given.insert(name).second, ConfigError, origin << " holds " << name << " twice",
                  "the file is corrupt");
    const Shape& want = params.get(name).spec.shape;
    SINKLAB_CHECK(value.shape() == want, ConfigError,
                  origin << ": " << name << " has shape " << shape_text(value.shape())
                         << " but the model's is " << shape_text(want),
                  "the weights and the model's config disagree");
  }
  for (const Param& p : params.params())
    SINKLAB_CHECK(given.count(p.spec.name), ConfigError,
                  origin << " has no " << p.spec.name << " " << shape_text(p.spec.shape),
                  "the weights and the model's config disagree");
  for (const auto& [name, value] : weights) {
    Tensor target = params[name];
    target.copy_from(value.to_device(target.device()));
  }
}

}  // namespace sinklab::train
