// Per-step metric files of one variant: metrics.jsonl (one JSON object per logged step),
// metrics.h5 (HDF5, one extendible dataset per metric, first dimension "step", dimensions
// labelled with H5DS so h5py shows ds.dims[i].label) and the TensorBoard events file
// (train/io/tensorboard_log.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/io/step_record.h"

namespace sinklab::train {

// A JSON object for one step (NaN and inf written as null).
std::string step_to_json(const StepRecord& record);

// What a resumed run's summary takes from the steps before its checkpoint, read back from
// <dir>/metrics.jsonl (which holds only those steps once a MetricsLog reopened it for the
// resume): the summary then prints what the uninterrupted run would, even when the resume comes
// at the final step and no step runs. Numbers as written (9 significant digits; null read as
// NaN). Everything empty or zero when the file is missing.
struct LoggedSteps {
  std::vector<double> recent_losses;  // (<= count) the last records' "loss", in step order
  double tokens_per_s_sum = 0;        // "tokens_per_s" summed over the records after step 0,
  int64_t timed_steps = 0;            // as the trainer times its own steps
  // The last record with sink metrics (has_sink false when none): its step and the summary's
  // columns only: sink_rate and, per layer, sink_mass, var_ratio, var_ratio_normed,
  // dim_disparity and super_ratio.
  StepRecord last_sink;
};
LoggedSteps read_logged_steps(const std::string& dir, size_t count);

class MetricsLog {
 public:
  // Opens (creating) <dir>/metrics.jsonl, <dir>/metrics.h5 and the events file, each when
  // asked, for a model with these sizes. keep_before_step >= 0 keeps only records with
  // step < keep_before_step from existing files (resume); -1 starts fresh.
  MetricsLog(const std::string& dir, int64_t n_layer, int64_t n_head, int64_t seq_len,
             bool jsonl, bool hdf5, bool tensorboard, int64_t keep_before_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const StepRecord& record);
  // Writes out everything buffered and fsyncs every file: what was written is on disk when it
  // returns (the trainer calls it before a checkpoint becomes durable, so a checkpoint is never
  // newer than the metrics). Throws IOError naming the file when the disk refuses.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sinklab::train
