// `sinklab train` and `sinklab compare`: load the config, read the launcher's rank, run the
// variants (train/trainer.h) and map how the run ended to the exit code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sinklab::train {

// What the CLI hands over (also the shape of `prepare` and `export-reference`'s arguments).
struct TrainingArgs {
  std::string config;                  // YAML file
  std::vector<std::string> overrides;  // --set key=value
  bool no_progress = false;            // no live progress bar
  std::string resume;                  // --resume: "", "auto" or a checkpoint file
  int64_t stop_after = -1;             // --stop-after N; -1 = never
  std::string init_from;               // --init-from: a checkpoint or Hugging Face model
};

// Trains the base config (`variants` empty, not side by side), the named variants, or every
// variant side by side. Returns the process exit code: 0, or 3 after too many non-finite steps.
int run_training(const TrainingArgs& args, const std::vector<std::string>& variants,
                 bool side_by_side);

}  // namespace sinklab::train
