// The training loop and the side-by-side runner.
//
// A run trains one or more variants in lockstep: at every step each variant takes the same
// micro-batches (its own loader with the run's seed, so identical batches in identical order),
// logs loss/lr/grad-norm/tokens-per-second and the sink metrics to runs/<name>/<variant>/, and
// evaluates on the same validation batches. What it prints is train/console.h's.
#pragma once
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/console.h"
#include "train/dist/launcher.h"
#include "train/io/metrics_log.h"
#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

class AdamW;
class DataParallel;

struct RunOptions {
  bool progress_bar = false;  // a live bar with ETA (when the console is a terminal)
  std::vector<std::string> only_variants;  // empty = all
  // "" = start fresh; "auto" = the newest good checkpoint of every variant (fresh when none);
  // a path = that checkpoint file (single-variant runs only).
  std::string resume;
  int64_t stop_after = -1;  // stop (with a checkpoint) once this many steps are done; -1 = never
  // Initial weights for every variant (train/io/model_source.h: a checkpoint or a Hugging Face
  // model) instead of the seeded init; the optimizer starts fresh. A resumed run ignores it.
  std::string init_from;
  LaunchEnv launch;         // rank and world size of a data-parallel job (one process: defaults)
};

// Why train() returned.
enum class RunEnd { Finished, Stopped, Interrupted, TooManySkipped };

class Run {
 public:
  // `config` is the loaded base config; with variants it runs them side by side, without it
  // runs one variant named "main".
  Run(const RunConfig& config, std::ostream& console, RunOptions options = {});
  ~Run();
  // Trains every variant to train.steps (or until stopped); returns their summaries (also
  // printed at the end of a finished run). SIGINT/SIGTERM write a checkpoint and return.
  std::vector<VariantSummary> train();
  RunEnd end_reason() const { return end_; }
  int64_t start_step() const { return start_step_; }
  // Folder of the run: <out_dir>/<name>.
  std::string folder() const;

 private:
  struct Variant;
  struct Evaluation {
    double loss = 0;                      // mean validation loss
    SinkMetrics metrics;                  // of the first validation batch
    std::vector<double> effective_rank;   // (L)
    std::vector<double> effective_rank_output;  // (L) mean over metrics.rank_sequences
    double loss_se = 0;                   // standard error of loss over the eval batches
    bool interrupted = false;             // a stop signal ended it early: nothing recorded
  };
  void step_all(int64_t step, bool evaluate_first);
  Evaluation evaluate(Variant& v, int64_t step, bool final);
  // Final evaluation, sample and record at step == train.steps; true when a stop signal cut
  // them short (no final record then: a resumed run makes it).
  bool finish(int64_t steps);
  void resume_from_checkpoints();
  void save_checkpoints(int64_t steps_done);
  // Under ZeRO-1, an AdamW holding every rank's moments (a collective: every rank calls it);
  // nullptr when v's optimizer holds them all already.
  std::unique_ptr<AdamW> whole_optimizer(Variant& v);
  std::string checkpoint_dir(const Variant& v) const;
  RunConfig base_;
  RunOptions options_;
  Console console_;
  std::vector<std::unique_ptr<Variant>> variants_;
  int64_t start_step_ = 0;
  RunEnd end_ = RunEnd::Finished;
  std::unique_ptr<DataParallel> parallel_;  // no-op for one process
};

}  // namespace sinklab::train
