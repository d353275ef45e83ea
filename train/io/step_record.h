// One logged step of one variant, and its named fields: the names, order and groups that
// metrics.jsonl, metrics.h5 and the TensorBoard events file all use (docs/METRICS.md defines
// each metric).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

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
  double memory_peak_mib = 0;  // the most memory in use since the process started (a peak inside
                               // a step counts on the GPU); variants side by side share it
  double val_loss = 0;       // NaN unless evaluated this step
  double val_loss_se = 0;    // standard error of val_loss over the eval batches (NaN when not)
  uint64_t batch_hash = 0;   // hash of the step's token ids, the global batch's (every rank's
                             // windows): equal across variants and world sizes of one run
  bool skipped = false;      // non-finite loss/grad norm: update skipped
  bool has_sink = false;     // `sink` filled this step
  SinkMetrics sink;
};

// One number per step. `group` is the TensorBoard section it is shown in (tag group/name).
struct ScalarField {
  const char* name;
  const char* group;
  double (*get)(const StepRecord&);
};
// One number per layer (of a step with sink metrics).
struct LayerField {
  const char* name;
  double (*get)(const LayerMetrics&);
};
// A vector per layer: per head, per position or per rank (`inner_label`).
struct LayerVectorField {
  const char* name;
  const char* inner_label;
  std::vector<double> (*get)(const LayerMetrics&);
};

// In the order metrics.jsonl writes them.
std::span<const ScalarField> scalar_fields();
std::span<const LayerField> layer_fields();
std::span<const LayerVectorField> layer_vector_fields();

}  // namespace sinklab::train
