#include "train/io/hf_config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "train/arch.h"
#include "train/io/json_text.h"
#include "train/model.h"

namespace sinklab::train {

namespace {

// One "key": value line per field, in the order added; values are JSON text already.
class JsonObject {
 public:
  // `json_value` is JSON text already (a number, null, a list, an object).
  JsonObject& add_json(const std::string& key, const std::string& json_value) {
    fields_.push_back(json_string(key) + ": " + json_value);
    return *this;
  }
  JsonObject& add(const std::string& key, int64_t value) {
    return add_json(key, std::to_string(value));
  }
  JsonObject& add(const std::string& key, double value) { return add_json(key, json_number(value)); }
  JsonObject& add(const std::string& key, bool value) {
    return add_json(key, value ? "true" : "false");
  }
  JsonObject& add(const std::string& key, const char* text) {
    return add_json(key, json_string(text));
  }
  JsonObject& add_optional(const std::string& key, const std::optional<int64_t>& value) {
    return add_json(key, value ? std::to_string(*value) : std::string("null"));
  }
  std::string text(const std::string& indent = "") const {
    std::string out = "{\n";
    for (size_t i = 0; i < fields_.size(); ++i)
      out += indent + "  " + fields_[i] + (i + 1 < fields_.size() ? ",\n" : "\n");
    return out + indent + "}";
  }

 private:
  std::vector<std::string> fields_;
};

// What a stock class cannot hold at all: the amplify intervention is `sinklab probe`'s, not a
// model's; RoPE needs an even head size.
void check_exportable(const ModelSection& m) {
  SINKLAB_CHECK(m.amplify_position < 0, ConfigError,
                "model.amplify_position is " << m.amplify_position
                                             << ": amplify is an intervention of `sinklab probe`, "
                                                "not part of a model to export",
                "export the checkpoint without it (set model.amplify_position: -1 in a copy) and "
                "apply it with `sinklab probe --amplify`");
  SINKLAB_CHECK(m.n_embd / m.n_head % 2 == 0 ||
                    arch_description(m.arch).positions != PositionKind::Rope,
                ConfigError, "RoPE needs an even head size (model.n_embd / model.n_head)",
                "choose n_embd and n_head with an even quotient");
}

std::string json_int_list(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

// A config.json being read: fields by name, with errors naming the file and the field.
class HfConfigReader {
 public:
  explicit HfConfigReader(const std::string& path) : path_(path) {
    try {
      root_ = YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
      SINKLAB_FAIL(IOError, "cannot read " << path,
                   "a Hugging Face model folder holds config.json beside model.safetensors");
    } catch (const YAML::Exception& e) {
      SINKLAB_FAIL(IOError, path << " is not valid JSON: " << e.what(), "the file is corrupt");
    }
    SINKLAB_CHECK(root_.IsMap(), IOError, path << " is not a JSON object",
                  "a config.json is one object of fields");
  }

  bool has(const std::string& field) const { return root_[field] && !root_[field].IsNull(); }

  template <class T>
  T get(const std::string& field) const {
    SINKLAB_CHECK(has(field), ConfigError, path_ << " has no field " << field,
                  "a " + model_type() + " config.json names it; was the file cut short?");
    return as<T>(root_[field], field);
  }
  template <class T>
  T get_or(const std::string& field, T fallback) const {
    return has(field) ? as<T>(root_[field], field) : fallback;
  }
  std::optional<int64_t> optional_int(const std::string& field) const {
    if (!has(field)) return std::nullopt;
    // A list (several end-of-text ids) keeps its first.
    const YAML::Node node = root_[field].IsSequence() ? root_[field][0] : root_[field];
    return as<int64_t>(node, field);
  }
  const YAML::Node& root() const { return root_; }
  std::string model_type() const {
    return root_["model_type"] ? root_["model_type"].as<std::string>("?") : std::string("?");
  }
  // Refuses a field whose value sinklab cannot compute: `what` says why.
  template <class T>
  void require(const std::string& field, T expected, T fallback, const std::string& what) const {
    const T value = get_or<T>(field, fallback);
    SINKLAB_CHECK(value == expected, ConfigError,
                  path_ << ": " << field << " is " << value << "; sinklab computes only "
                        << expected << " (" << what << ")",
                  "this model cannot be imported exactly; sinklab's GPT-2 and LLaMA follow "
                  "docs/INTEROP.md");
  }
  const std::string& path() const { return path_; }
  // A field holding the YAML name of a choice key's value (sinklab's own config.json).
  template <class E>
  E get_choice(const std::string& field) const {
    const std::string text = get<std::string>(field);
    const std::optional<E> value = choice_from_text<E>(text);
    SINKLAB_CHECK(value, ConfigError,
                  path_ << ": " << field << " is '" << text << "', which sinklab does not know",
                  "sinklab's export writes its config.json; compare the file with one it wrote");
    return *value;
  }

 private:
  template <class T>
  T as(const YAML::Node& node, const std::string& field) const {
    try {
      return node.as<T>();
    } catch (const YAML::Exception&) {
      SINKLAB_FAIL(ConfigError, path_ << ": field " << field << " has the wrong type",
                   "compare it with a config.json that transformers wrote");
    }
  }
  std::string path_;
  YAML::Node root_;
};

ModelSection gpt2_from_hf(const HfConfigReader& c) {
  ModelSection m;
  m.arch = Arch::Gpt2;
  m.n_embd = c.get<int64_t>("n_embd");
  m.n_layer = c.get<int64_t>("n_layer");
  m.n_head = c.get<int64_t>("n_head");
  m.block_size = c.get<int64_t>("n_positions");
  m.vocab_size = c.get<int64_t>("vocab_size");
  m.ffn_hidden = c.get_or<int64_t>("n_inner", 4 * m.n_embd);
  m.norm_eps = c.get_or<double>("layer_norm_epsilon", 1e-5);
  m.tie_embeddings = c.get_or<bool>("tie_word_embeddings", true);
  m.init_std = c.get_or<double>("initializer_range", 0.02);
  const std::string act = c.get_or<std::string>("activation_function", "gelu_new");
  SINKLAB_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh", ConfigError,
                c.path() << ": activation_function is " << act
                         << "; sinklab's GPT-2 computes the tanh GELU (gelu_new)",
                "this model cannot be imported exactly");
  c.require<bool>("scale_attn_weights", true, true, "scores divided by sqrt(head size)");
  c.require<bool>("scale_attn_by_inverse_layer_idx", false, false, "no per-layer score scale");
  c.require<bool>("add_cross_attention", false, false, "a decoder alone");
  return m;
}

ModelSection llama_from_hf(const HfConfigReader& c) {
  ModelSection m;
  m.arch = Arch::Llama;
  m.n_embd = c.get<int64_t>("hidden_size");
  m.n_layer = c.get<int64_t>("num_hidden_layers");
  m.n_head = c.get<int64_t>("num_attention_heads");
  m.ffn_hidden = c.get<int64_t>("intermediate_size");
  m.vocab_size = c.get<int64_t>("vocab_size");
  m.block_size = c.get_or<int64_t>("max_position_embeddings", 2048);
  m.norm_eps = c.get_or<double>("rms_norm_eps", 1e-6);
  m.tie_embeddings = c.get_or<bool>("tie_word_embeddings", false);  // LlamaConfig's default
  m.init_std = c.get_or<double>("initializer_range", 0.02);
  c.require<int64_t>("num_key_value_heads", m.n_head, m.n_head,
                     "as many key/value heads as query heads, no grouped-query attention");
  SINKLAB_CHECK(m.n_head > 0 && m.n_embd % m.n_head == 0, ConfigError,
                c.path() << ": hidden_size " << m.n_embd << " is not a multiple of "
                         << "num_attention_heads " << m.n_head,
                "the file is inconsistent");
  c.require<int64_t>("head_dim", m.n_embd / m.n_head, m.n_embd / m.n_head,
                     "head size hidden_size / num_attention_heads");
  c.require<std::string>("hidden_act", "silu", "silu", "SwiGLU with SiLU");
  c.require<bool>("attention_bias", false, false, "no biases");
  c.require<bool>("mlp_bias", false, false, "no biases");
  c.require<int64_t>("pretraining_tp", 1, 1, "one tensor-parallel slice");
  // transformers 5 keeps theta in rope_parameters, 4 in rope_theta (with rope_scaling).
  m.rope_theta = c.get_or<double>("rope_theta", 10000.0);
  for (const char* field : {"rope_parameters", "rope_scaling"}) {
    if (!c.has(field)) continue;
    const YAML::Node rope = c.root()[field];
    const std::string type = rope["rope_type"] ? rope["rope_type"].as<std::string>("?")
                             : rope["type"]    ? rope["type"].as<std::string>("?")
                                               : std::string("default");
    SINKLAB_CHECK(type == "default", ConfigError,
                  c.path() << ": " << field << " asks for RoPE type " << type
                           << "; sinklab computes only the default RoPE",
                  "this model cannot be imported exactly");
    if (rope["rope_theta"]) m.rope_theta = rope["rope_theta"].as<double>();
  }
  return m;
}

// A config.json sinklab wrote for its own model class (the variants no stock class computes).
ModelSection sinklab_from_hf(const HfConfigReader& c) {
  ModelSection m;
  m.arch = c.get_choice<Arch>("arch");
  m.vocab_size = c.get<int64_t>("vocab_size");
  m.n_layer = c.get<int64_t>("n_layer");
  m.n_head = c.get<int64_t>("n_head");
  m.n_embd = c.get<int64_t>("n_embd");
  m.ffn_hidden = c.get<int64_t>("ffn_hidden");
  m.block_size = c.get<int64_t>("block_size");
  m.norm_eps = c.get<double>("norm_eps");
  m.rope_theta = c.get<double>("rope_theta");
  m.attn_output_norm = c.get_choice<AttnOutputNorm>("attn_output_norm");
  m.gamma_shared = c.get_or<bool>("gamma_shared", false);
  m.attention = c.get_choice<AttentionKind>("attention");
  m.isolate_positions = c.get_or<std::vector<int64_t>>("isolate_positions", {});
  m.isolate_layers = c.get_or<std::vector<int64_t>>("isolate_layers", {});
  m.tie_embeddings = c.get_or<bool>("tie_word_embeddings", true);
  m.init_std = c.get_or<double>("initializer_range", 0.02);
  return m;
}

// sinklab's own keys, written under "sinklab" so an export imports back to the same model.
void read_sinklab_fields(const HfConfigReader& c, ModelSection& m) {
  const YAML::Node own = c.root()["sinklab"];
  if (!own || !own.IsMap()) return;
  if (own["vocab_multiple"]) m.vocab_multiple = own["vocab_multiple"].as<int64_t>();
}

}  // namespace

bool needs_sinklab_modeling(const ModelSection& m) {
  return m.attn_output_norm != AttnOutputNorm::None || m.attention != AttentionKind::Softmax ||
         !m.isolate_positions.empty();
}

std::string hf_config_json(const ModelSection& m, const HfSpecialTokens& tokens) {
  check_exportable(m);
  SINKLAB_CHECK(m.vocab_size > 0, ValueError, "model.vocab_size is " << m.vocab_size,
                "resolve the vocabulary (from the tokenizer) before writing config.json");
  const int64_t F = GPT::resolved_ffn_width(m);
  const double eps = GPT::resolved_norm_eps(m);
  JsonObject config;
  if (needs_sinklab_modeling(m)) {  // scripts/hf/modeling_sinklab.py, beside config.json
    JsonObject auto_map;
    auto_map.add("AutoConfig", "modeling_sinklab.SinklabConfig")
        .add("AutoModelForCausalLM", "modeling_sinklab.SinklabForCausalLM");
    config.add_json("architectures", "[\"SinklabForCausalLM\"]")
        .add("model_type", "sinklab")
        .add_json("auto_map", auto_map.text("  "))
        .add("arch", choice_text(m.arch))
        .add("vocab_size", m.vocab_size)
        .add("n_layer", m.n_layer)
        .add("n_head", m.n_head)
        .add("n_embd", m.n_embd)
        .add("ffn_hidden", F)
        .add("block_size", m.block_size)
        .add("norm_eps", eps)
        .add("rope_theta", m.rope_theta)
        .add("attn_output_norm", choice_text(m.attn_output_norm))
        .add("gamma_shared", m.gamma_shared)
        .add("attention", choice_text(m.attention))
        .add_json("isolate_positions", json_int_list(m.isolate_positions))
        .add_json("isolate_layers", json_int_list(m.isolate_layers));
  } else if (arch_description(m.arch).ffn == FfnKind::Gelu) {
    config.add_json("architectures", "[\"GPT2LMHeadModel\"]")
        .add("model_type", "gpt2")
        .add("vocab_size", m.vocab_size)
        .add("n_positions", m.block_size)
        .add("n_embd", m.n_embd)
        .add("n_layer", m.n_layer)
        .add("n_head", m.n_head)
        .add("n_inner", F)
        .add("activation_function", "gelu_new")
        .add("layer_norm_epsilon", eps)
        .add("resid_pdrop", 0.0)
        .add("embd_pdrop", 0.0)
        .add("attn_pdrop", 0.0)
        .add("scale_attn_weights", true)
        .add("scale_attn_by_inverse_layer_idx", false)
        .add("reorder_and_upcast_attn", false);
  } else {
    JsonObject rope;
    rope.add("rope_type", "default").add("rope_theta", m.rope_theta);
    config.add_json("architectures", "[\"LlamaForCausalLM\"]")
        .add("model_type", "llama")
        .add("vocab_size", m.vocab_size)
        .add("hidden_size", m.n_embd)
        .add("intermediate_size", F)
        .add("num_hidden_layers", m.n_layer)
        .add("num_attention_heads", m.n_head)
        .add("num_key_value_heads", m.n_head)
        .add("head_dim", m.n_embd / m.n_head)
        .add("hidden_act", "silu")
        .add("max_position_embeddings", m.block_size)
        .add("rms_norm_eps", eps)
        .add("rope_theta", m.rope_theta)  // transformers 4
        .add_json("rope_scaling", "null")
        .add_json("rope_parameters", rope.text("  "))  // transformers 5
        .add("attention_bias", false)
        .add("attention_dropout", 0.0)
        .add("mlp_bias", false)
        .add("pretraining_tp", int64_t{1});
  }
  JsonObject own;
  own.add("vocab_multiple", m.vocab_multiple);
  config.add("tie_word_embeddings", m.tie_embeddings)
      .add("initializer_range", m.init_std)
      .add_optional("bos_token_id", tokens.bos)
      .add_optional("eos_token_id", tokens.eos)
      .add("use_cache", true)
      .add("torch_dtype", "float32")
      .add_json("sinklab", own.text("  "));
  return config.text() + "\n";
}

std::string hf_generation_config_json(const HfSpecialTokens& tokens, double temperature,
                                      int64_t top_k) {
  JsonObject generation;
  generation.add_optional("bos_token_id", tokens.bos).add_optional("eos_token_id", tokens.eos);
  if (temperature > 0) {
    generation.add("do_sample", true).add("temperature", temperature).add("top_k", top_k);
  } else {
    generation.add("do_sample", false);
  }
  return generation.text() + "\n";
}

ModelSection model_from_hf_config(const std::string& path) {
  const HfConfigReader c(path);
  const std::string type = c.get<std::string>("model_type");
  ModelSection m;
  if (type == "gpt2") {
    m = gpt2_from_hf(c);
  } else if (type == "llama") {
    m = llama_from_hf(c);
  } else if (type == "sinklab") {
    m = sinklab_from_hf(c);
  } else {
    SINKLAB_FAIL(ConfigError,
                 path << ": model_type is " << type << "; sinklab imports gpt2 and llama",
                 "only GPT-2 and LLaMA layouts map onto sinklab's models");
  }
  read_sinklab_fields(c, m);
  return m;
}

HfSpecialTokens special_tokens_from_hf_config(const std::string& path) {
  const HfConfigReader c(path);
  return {c.optional_int("bos_token_id"), c.optional_int("eos_token_id")};
}

}  // namespace sinklab::train
