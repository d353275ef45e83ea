// The run keys that hold for a whole process (run.precision, run.attention_kernels,
// run.bf16_gemm, run.cpu_gemm, run.profile), set once from a config before any op runs: by the
// trainer, and by the commands that run a stored model (probe, generate, forward), so a model
// computes as its run did.
#pragma once
#include "train/config.h"

namespace sinklab::train {

// Throws ConfigError for run.cpu_gemm: openblas in a build without OpenBLAS.
void apply_process_settings(const RunSection& run);

}  // namespace sinklab::train
