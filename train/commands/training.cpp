#include "train/commands/training.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "train/config.h"
#include "train/dist/launcher.h"
#include "train/trainer.h"

namespace sinklab::train {

int run_training(const TrainingArgs& args, const std::vector<std::string>& variants,
                 bool side_by_side) {
  RunConfig config = load_config(args.config, args.overrides);
  if (!side_by_side && variants.empty()) config.variants.clear();  // the base config alone
  SINKLAB_CHECK(!side_by_side || !config.variants.empty(), ConfigError,
                "compare needs a variants: list in " << args.config,
                "add variants (see configs/quickstart.yaml) or use `sinklab train`");
  RunOptions options;
  options.progress_bar = !args.no_progress && isatty(fileno(stdout));
  options.only_variants = variants;
  options.resume = args.resume;
  options.stop_after = args.stop_after;
  options.init_from = args.init_from;
  options.launch = launch_env_from_process();
  Run run(config, std::cout, options);  // the ranks that lead a group print (trainer.h)
  run.train();
  return run.end_reason() == RunEnd::TooManySkipped ? 3 : 0;
}

}  // namespace sinklab::train
