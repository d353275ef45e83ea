// The run keys that hold for a whole process (run.precision, run.attention_kernels,
// run.bf16_gemm, run.cpu_gemm, run.profile), set once from a config before any op runs: by the
// trainer, and by the commands that run a stored model (probe, generate, forward), so a model
// computes as its run did.
#pragma once
#include "ops/cross_entropy.h"
#include "train/config.h"

namespace sinklab::train {

// Throws ConfigError for run.cpu_gemm: openblas in a build without OpenBLAS.
void apply_process_settings(const RunSection& run);

// apply_process_settings for a command that runs a stored model (probe, generate, forward):
// the same, but its products take cuBLASLt's heuristic's first algorithm whatever
// run.gemm_search says (a search would time every shape again for a few passes).
void apply_stored_model_settings(const RunSection& run);

// What a training step's forward, which reads its loss only, lets the loss do with the logits:
// write its gradient over them under run.release_forward_inputs (GPT::forward).
ops::CrossEntropyLogits logits_after_loss(const RunSection& run);

}  // namespace sinklab::train
