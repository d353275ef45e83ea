// What a training run prints, in the nanoGPT/llm.c style: one line per variant per logged step,
// validation lines and samples, a live progress bar with ETA (on a terminal), the SINKLAB profile
// print-out, and the comparison table at the end. The training loop (train/trainer.h) hands over
// numbers; every format lives here.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "train/io/metrics_log.h"
#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

struct VariantSummary {
  std::string name;
  int64_t steps = 0;
  double final_loss = 0;      // mean training loss over the last 10 steps
  double val_loss = 0;        // final evaluation
  std::vector<double> val_losses;  // (eval_batches) its losses, batch by batch
  uint64_t val_batches_hash = 0;   // which validation batches (hash_tokens of their inputs)
  double tokens_per_s = 0;    // mean over the run (after the first step)
  StepRecord last_metrics;    // last step with sink metrics (has_sink)
  std::string sample;         // text sampled at the end
};

// One row of the comparison table printed at the end of `sinklab compare`: a variant's summary
// reduced to the numbers the table prints (NaN where the run had no sink metrics). Its numbers
// travel between ranks when the variants train on separate groups (run.variant_placement split).
struct ComparisonRow {
  std::string name;
  double train_loss = 0, val_loss = 0;
  double sink_mass = 0, sink_rate = 0;       // mean over layers; % of heads
  double var_ratio = 0, var_ratio_normed = 0;  // mean over layers
  double disparity = 0, super_x = 0;          // max over layers
  double tokens_per_s = 0;
  static constexpr size_t kNumbers = 9;
  std::vector<double> numbers() const;  // (kNumbers) in the order above
  static ComparisonRow from_numbers(std::string name, const std::vector<double>& numbers);
};
ComparisonRow comparison_row(const VariantSummary& summary);
std::string comparison_table(const std::vector<ComparisonRow>& rows);

// 1234567 -> "1,234,567" (rounded to a whole number).
std::string format_count(double v);
// Seconds as "3m07s" or "1h02m".
std::string format_duration(double seconds);

class Console {
 public:
  Console(std::ostream& out, bool progress_bar) : out_(out), progress_bar_(progress_bar) {}
  std::ostream& stream() { return out_; }  // free-form lines (resume notes, the model line)

  // "step   11/300 | baseline | loss 5.8461 | lr 7.33e-04 | norm 0.838 | 1899.3 ms | 539 tok/s"
  // plus MFU and memory where known, and the sink summary on metrics steps.
  void step_line(const std::string& variant, int64_t steps, const StepRecord& r);
  void skipped_step(const std::string& variant, const StepRecord& r, int64_t in_a_row,
                    int64_t limit);
  // An evaluation: its val loss and standard error, the layer-mean effective ranks, and the
  // wall time it took (its forwards, the sink metrics and the ranks' eigen-solves on the host:
  // what a GPU lease must leave room for).
  void eval_line(const std::string& variant, int64_t step, int64_t steps, double val_loss,
                 double val_loss_se, const SinkMetrics& metrics, int64_t output_rank_sequences,
                 double seconds);
  void sample(const std::string& variant, const std::string& text);
  // The bar after `done` of `total` steps of this session, `elapsed_s` seconds in.
  void progress(int64_t step_done, int64_t steps, double fraction, double elapsed_s);
  void stopped(const std::string& why, int64_t done_steps, const std::string& folder);
  void summary(const std::vector<ComparisonRow>& rows);
  // Each variant's final val loss minus the first variant's, with the paired standard error over
  // the validation batches both evaluated (the same batches: equal val_batches_hash); nothing
  // for one variant, and a note for a variant whose batches differ.
  void val_differences(const std::vector<VariantSummary>& summaries);
  // ms per step of each phase of one variant (device synchronised at each phase's end).
  void phase_profile(const std::string& variant, const std::map<std::string, double>& phase_ms,
                     int64_t steps_profiled);
  // ms per step of each op of one pass, largest first, over every variant's steps.
  void op_profile(const char* pass, const std::map<std::string, double>& totals,
                  int64_t steps_profiled);
  // With the process's peak memory and the estimate the run was checked against before its
  // first step (bytes; a NaN peak is left out). On the CPU the peak is the resident set's, which
  // also holds the program, its libraries and the data.
  void wall_time(double seconds, const std::string& folder, double peak_bytes,
                 double estimated_bytes, const std::string& metric_files);  // "" = none
  void flush();

 private:
  const char* clear_bar() const { return progress_bar_ ? "\r\033[K" : ""; }
  std::ostream& out_;
  bool progress_bar_;
};

}  // namespace sinklab::train
