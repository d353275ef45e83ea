// The training loop and the side-by-side runner.
//
// A run trains one or more variants in lockstep: at every step each variant takes the same
// micro-batches (its own loader with the run's seed, so identical batches in identical order),
// logs loss/lr/grad-norm/tokens-per-second and the sink metrics to runs/<name>/<variant>/, and
// evaluates on the same validation batches. What it prints is train/console.h's.
#pragma once
#include <iosfwd>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/console.h"
#include "train/dist/launcher.h"
#include "train/dist/variant_groups.h"
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
// Of a data-parallel job, the ranks that lead a data-parallel group (rank 0 of the world, and
// under run.variant_placement split the first rank of each variant's group) print to `console`;
// the others print nothing. Only world rank 0 prints the comparison table.

// Why train() returned.
enum class RunEnd { Finished, Stopped, Interrupted, TooManySkipped };

class Run {
 public:
  // `config` is the loaded base config; with variants it runs them side by side, without it
  // runs one variant named "main".
  Run(const RunConfig& config, std::ostream& console, RunOptions options = {});
  ~Run();
  // Trains every variant to train.steps (or until stopped); returns the summaries of the
  // variants this rank trains (every variant's row is printed at the end of a finished run).
  // SIGINT/SIGTERM write a checkpoint and return.
  std::vector<VariantSummary> train();
  RunEnd end_reason() const { return end_; }
  int64_t start_step() const { return start_step_; }
  // Did the variants continue from checkpoints (a fresh start, asked to resume or not, did not)?
  bool resumed() const { return start_step_ > 0; }
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
  // Whether to stop after a step, the same answer on every rank of the world: a stop signal
  // reached any rank, or some variant had too many non-finite steps in a row.
  RunEnd agree_on_stop(bool signal, bool too_many_skipped);
  // Every variant's row of the comparison table on world rank 0 (each group leader sends its
  // own under split); `own` are this rank's.
  std::vector<ComparisonRow> every_row(const std::vector<VariantSummary>& own);
  // Every variant's final evaluation as its val_losses.json holds it (name, val loss, batch
  // losses, batches' hash); none where a variant's file is missing or not of the evaluation
  // after `steps`. Under split placement each group holds only its own variant's losses.
  std::vector<VariantSummary> final_evaluations_on_disk(int64_t steps) const;
  // The world's agreement: the whole job's collective (under split, parallel_ spans only this
  // rank's group).
  DataParallel& world() { return world_ ? *world_ : *parallel_; }
  void save_checkpoints(int64_t steps_done);
  // Under ZeRO-1, an AdamW holding every rank's moments (a collective: every rank calls it);
  // nullptr when v's optimizer holds them all already.
  std::unique_ptr<AdamW> whole_optimizer(Variant& v);
  std::string checkpoint_dir(const Variant& v) const;
  // A fresh start's: when ckpt/ holds checkpoints, moves them with the run's metric files,
  // TensorBoard events and config.yaml to <variant>/replaced/ (keep_generation).
  void retire_earlier_run(const Variant& v);
  // A resume's: renames the checkpoints after the step resumed from in place
  // (step_X.h5.abandoned: an abandoned continuation's, which --resume auto would take later) and
  // points `latest` at the one resumed from.
  void retire_later_checkpoints(const Variant& v);
  // Moves items (entries of v.dir) to v.dir/replaced/, replacing the generation kept there only
  // once the new one is whole, and says so on the console.
  void keep_generation(const Variant& v, const std::vector<std::filesystem::path>& items);
  // run.gemm_search asks for a search (more than one candidate) on a GPU run.
  bool asks_gemm_search() const;
  // ... and the search applies: the run is one process (off with several, see the constructor).
  bool searches_gemms() const;
  // Where the run folder keeps the choices (train/io/gemm_choices_file.h): the folder of the
  // first variant this process trains, which no other process writes (`train --variant` runs of
  // one config share the run folder).
  std::string gemm_choices_folder() const;
  // run.gemm_search: the choices stored in the run folder for this library and card, if any.
  void take_stored_gemm_choices();
  RunConfig base_;
  RunOptions options_;
  std::vector<VariantSpec> selected_;  // the variants the run trains, in order
  VariantGroups groups_;               // which of them this rank trains (run.variant_placement)
  std::ostringstream quiet_;           // the console of ranks that print nothing
  Console console_;
  std::vector<std::unique_ptr<Variant>> variants_;
  int64_t start_step_ = 0;  // > 0: the variants continue from checkpoints at it
  RunEnd end_ = RunEnd::Finished;
  double estimated_bytes_ = 0;  // what the memory check counted for this device's variants
  std::unique_ptr<DataParallel> parallel_;  // this rank's variants' data parallelism (no-op for
                                            // one process)
  std::unique_ptr<DataParallel> world_;  // under split: the whole job, over TCP, for agreement
};

}  // namespace sinklab::train
