// What differs between the model families, described once: the norm, the FFN, positions,
// biases, the attention projections, and the Hugging Face parameter names. train/model.cpp
// builds and runs a model from this description instead of asking which family it is.
#pragma once

namespace sinklab::train {

// model.arch (its YAML text: config.cpp's choice table).
enum class Arch { Gpt2, Llama };

enum class NormKind { LayerNorm, RmsNorm };
enum class FfnKind { Gelu, SwiGlu };          // GELU(c_fc x) | silu(gate x) * (up x)
enum class PositionKind { Learned, Rope };    // a (T, C) table added to the embedding | RoPE
enum class QkvKind { Packed, Separate };      // one (3C, C) product | q, k, v products

struct ArchDescription {
  Arch arch;               // model.arch
  NormKind norm;
  double norm_eps;         // used when model.norm_eps is 0
  FfnKind ffn;             // F when model.ffn_hidden is 0: 4C (GELU), 2/3 of 4C up to 64 (SwiGLU)
  PositionKind positions;
  QkvKind qkv;
  bool biases;             // linear and norm biases
  // Hugging Face names; layer l's parameters start with "<layers><l>.".
  const char* token_embedding;     // (V, C)
  const char* position_embedding = nullptr;  // (block_size, C); Learned positions only
  const char* layers;
  const char* final_norm;          // prefixes of norms end in "."
  const char* attn_norm;           // in a layer
  const char* ffn_norm;
  const char* attn;                // the attention module in a layer
  const char* qkv_proj = nullptr;  // Packed: (3C, C)
  const char *q_proj = nullptr, *k_proj = nullptr, *v_proj = nullptr;  // Separate: (C, C) each
  const char* attn_out;            // (C, C)
  const char* mlp;                 // the FFN module in a layer
  const char* fc = nullptr;        // Gelu: (F, C)
  const char *gate = nullptr, *up = nullptr;  // SwiGlu: (F, C) each
  const char* mlp_out;             // (C, F)
};

// GPT-2 (LayerNorm, learned positions, GELU, biases, packed c_attn) or LLaMA (RMSNorm, RoPE,
// SwiGLU, no biases).
const ArchDescription& arch_description(Arch arch);

}  // namespace sinklab::train
