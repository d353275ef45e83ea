// Hugging Face model configs (config.json, generation_config.json) <-> sinklab's model section.
//
// gpt2  <-> GPT2Config  (model_type "gpt2", GPT2LMHeadModel): LayerNorm, learned positions,
//           tanh GELU ("gelu_new"), biases, packed c_attn.
// llama <-> LlamaConfig (model_type "llama", LlamaForCausalLM): RMSNorm, RoPE (rotate-half
//           pairing), SwiGLU, no biases, as many key/value heads as query heads.
// sinklab <-> SinklabConfig (model_type "sinklab", SinklabForCausalLM in modeling_sinklab.py,
//           loaded with trust_remote_code=True): the paper's variants no stock class computes
//           (head-wise RMSNorm, sigmoid attention, the isolate mask), in either layout.
// The amplify intervention is `sinklab probe`'s and is refused on export. On import, a config a
// stock class would compute differently from sinklab (grouped-query attention, RoPE scaling,
// another activation, ...) is refused naming the field.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "train/config.h"

namespace sinklab::train {

struct HfSpecialTokens {
  std::optional<int64_t> bos;  // beginning / end of text ids, when the tokenizer has them
  std::optional<int64_t> eos;
};

// True when no stock transformers class computes `model`: its config.json then names
// SinklabForCausalLM, and the folder needs modeling_sinklab.py (train/io/hf_modeling_source.h).
bool needs_sinklab_modeling(const ModelSection& model);

// config.json text for `model` (resolved: vocab_size > 0). Throws ConfigError naming the key
// for a model no class computes (amplify set, an odd RoPE head size).
std::string hf_config_json(const ModelSection& model, const HfSpecialTokens& tokens);

// generation_config.json text: sampling at `temperature` (0: greedy) with `top_k` (0: off).
std::string hf_generation_config_json(const HfSpecialTokens& tokens, double temperature,
                                      int64_t top_k);

// The model section a config.json describes (every other key at sinklab's default). Throws
// ConfigError naming the file and the field for a config sinklab cannot compute exactly.
ModelSection model_from_hf_config(const std::string& config_json_path);

// The special tokens a config.json names (bos_token_id, eos_token_id; null or absent: none).
HfSpecialTokens special_tokens_from_hf_config(const std::string& config_json_path);

}  // namespace sinklab::train
