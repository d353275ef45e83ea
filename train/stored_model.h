// A stored model (train/io/model_source.h: a checkpoint or a Hugging Face model) made runnable
// by the commands that read one (probe, generate, forward).
#pragma once
#include <memory>
#include <string>

#include "train/config.h"
#include "train/io/safetensors.h"
#include "train/model.h"

namespace sinklab::train {

// Applies cfg's process settings as its run computed, except that the products take cuBLASLt's
// heuristic's first algorithm (apply_stored_model_settings), and returns the GPT of cfg.model on
// cfg.run.device holding `weights` (nothing drawn first). ConfigError naming `origin` and the
// tensor when the weights do not fit the model (load_weights).
std::unique_ptr<GPT> open_stored_model(const RunConfig& cfg, const NamedTensors& weights,
                                       const std::string& origin);

}  // namespace sinklab::train
