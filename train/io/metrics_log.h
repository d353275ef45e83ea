// Per-step metric files of one variant: metrics.jsonl (one JSON object per logged step) and
// metrics.h5 (HDF5, one extendible dataset per metric, first dimension "step", dimensions
// labelled with H5DS so h5py shows ds.dims[i].label).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

struct StepRecord {
  int64_t step = 0;
  double loss = 0;           // training loss (mean over the step's micro-batches)
  double lr = 0;
  double grad_norm = 0;      // before clipping
  double tokens_per_s = 0;
  double step_ms = 0;
  double mfu = 0;            // model FLOPs / (step time * bf16 peak); NaN where the peak is
                             // unknown (CPU, unlisted GPUs)
  double memory_mib = 0;     // memory in use after the step: the GPU pool's tensors, or the
                             // process's resident set on the CPU
  double val_loss = 0;       // NaN unless evaluated this step
  double val_loss_se = 0;    // standard error of val_loss over the eval batches (NaN when not)
  uint64_t batch_hash = 0;   // hash of the step's token ids: equal across variants of one run
  bool skipped = false;      // non-finite loss/grad norm: update skipped
  bool has_sink = false;     // `sink` filled this step
  SinkMetrics sink;
};

// A JSON object for one step (NaN and inf written as null).
std::string step_to_json(const StepRecord& record);

class MetricsLog {
 public:
  // Opens (creating) <dir>/metrics.jsonl and <dir>/metrics.h5 for a model with these sizes.
  // keep_before_step >= 0 keeps only records with step < keep_before_step from existing files
  // (resume); -1 starts fresh.
  MetricsLog(const std::string& dir, int64_t n_layer, int64_t n_head, int64_t seq_len,
             bool jsonl, bool hdf5, int64_t keep_before_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const StepRecord& record);
  // Writes out everything buffered and fsyncs both files: what was written is on disk when it
  // returns (the trainer calls it before a checkpoint becomes durable, so a checkpoint is never
  // newer than the metrics). Throws IOError naming the file when the disk refuses.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sinklab::train
