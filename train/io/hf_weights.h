// A model's parameters under sinklab's names and layouts <-> a Hugging Face state dict
// (GPT2LMHeadModel / LlamaForCausalLM).
//
// The names are the same (sinklab names its parameters as transformers does). Two things differ:
//   - GPT-2's attention and MLP matrices are Conv1D in transformers, stored (in, out): c_attn,
//     attn.c_proj, c_fc, mlp.c_proj are transposed each way.
//   - A tied lm_head is not stored (transformers re-ties it to the token embedding).
// Reading also takes what other writers leave: GPT-2 files without the "transformer." prefix
// (the original OpenAI port), the attention-mask buffers older transformers saved (attn.bias,
// attn.masked_bias, rotary_emb.inv_freq), F16/BF16 values (widened to f32), and a tied lm_head
// that was stored anyway (it must equal the embedding).
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"
#include "train/config.h"
#include "train/io/safetensors.h"
#include "train/parameters.h"

namespace sinklab::train {

// sinklab parameters (f32, any device) -> the tensors of a Hugging Face model.safetensors.
NamedTensors to_hf_state_dict(const NamedTensors& params);

// A Hugging Face state dict -> exactly the parameters `model` builds (sinklab names, layouts,
// f32 on the CPU, in parameter order). Throws ConfigError naming `origin` and the tensor for a
// missing tensor, an unknown one (another layout) or a wrong shape (both shapes given).
NamedTensors from_hf_state_dict(std::map<std::string, Tensor> tensors, const ModelSection& model,
                                const std::string& origin);

// Copies `weights` into `params`: every parameter must be given once with its shape. Throws
// ConfigError naming `origin` and the tensor otherwise; nothing is copied unless all match.
void load_weights(ParameterSet& params, const NamedTensors& weights, const std::string& origin);

}  // namespace sinklab::train
