// Where a model's weights come from, for `probe`, `generate`, `export` and `train --init-from`:
//   a sinklab checkpoint       step_XXXXXXXX.h5 (its stored config describes the model)
//   a Hugging Face folder      config.json + model.safetensors (+ tokenizer.json), GPT-2 or
//                              LLaMA layout, as save_pretrained writes it
//   a .safetensors file        with the config.json of its folder
// Each gives the model's config and its parameters under sinklab's names and layouts.
#pragma once
#include <cstdint>
#include <string>

#include "train/config.h"
#include "train/io/hf_config.h"
#include "train/io/safetensors.h"

namespace sinklab::train {

enum class ModelSourceKind { Checkpoint, HuggingFace };

struct ModelSource {
  std::string path;         // as given
  ModelSourceKind kind = ModelSourceKind::Checkpoint;
  RunConfig config;         // checkpoint: its stored config; Hugging Face: sinklab's defaults with
                            // the model section from config.json (and its tokenizer.json, if any)
  NamedTensors params;      // sinklab names and layouts, f32 on the CPU, in parameter order
  int64_t step = 0;         // the checkpoint's step; 0 for a Hugging Face model
  HfSpecialTokens special;  // Hugging Face: config.json's bos/eos ids
};

// Reads the config and weights at `path` (any of the three above). Throws IOError naming the
// path when it is none of them, ConfigError naming the tensor or field when it does not fit.
ModelSource load_model_source(const std::string& path);

// Only the config (cheap for a Hugging Face folder; a checkpoint is verified whole).
RunConfig model_source_config(const std::string& path);

// "the checkpoint step_00000100.h5 (step 100)" / "the Hugging Face model at DIR".
std::string describe(const ModelSource& source);

}  // namespace sinklab::train
