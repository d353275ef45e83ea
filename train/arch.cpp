#include "train/arch.h"

namespace sinklab::train {

namespace {

constexpr ArchDescription kGpt2{
    .arch = Arch::Gpt2,
    .norm = NormKind::LayerNorm,
    .norm_eps = 1e-5,
    .ffn = FfnKind::Gelu,
    .positions = PositionKind::Learned,
    .qkv = QkvKind::Packed,
    .biases = true,
    .token_embedding = "transformer.wte.weight",
    .position_embedding = "transformer.wpe.weight",
    .layers = "transformer.h.",
    .final_norm = "transformer.ln_f.",
    .attn_norm = "ln_1.",
    .ffn_norm = "ln_2.",
    .attn = "attn.",
    .qkv_proj = "c_attn.",
    .attn_out = "c_proj.",
    .mlp = "mlp.",
    .fc = "c_fc.",
    .mlp_out = "c_proj.",
};

constexpr ArchDescription kLlama{
    .arch = Arch::Llama,
    .norm = NormKind::RmsNorm,
    .norm_eps = 1e-6,
    .ffn = FfnKind::SwiGlu,
    .positions = PositionKind::Rope,
    .qkv = QkvKind::Separate,
    .biases = false,
    .token_embedding = "model.embed_tokens.weight",
    .layers = "model.layers.",
    .final_norm = "model.norm.",
    .attn_norm = "input_layernorm.",
    .ffn_norm = "post_attention_layernorm.",
    .attn = "self_attn.",
    .q_proj = "q_proj.",
    .k_proj = "k_proj.",
    .v_proj = "v_proj.",
    .attn_out = "o_proj.",
    .mlp = "mlp.",
    .gate = "gate_proj.",
    .up = "up_proj.",
    .mlp_out = "down_proj.",
};

}  // namespace

const ArchDescription& arch_description(Arch arch) {
  switch (arch) {
    case Arch::Llama: return kLlama;
    case Arch::Gpt2: break;
  }
  return kGpt2;
}

}  // namespace sinklab::train
