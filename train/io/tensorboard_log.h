// The TensorBoard events file of one variant, beside its metrics.jsonl:
//   <dir>/events.out.tfevents.<unix time>.<host>.sinklab
// (TensorBoard reads every file whose name holds "tfevents"; each variant's folder is one run.)
// TFRecord framing (train/io/tf_record.h) of Event messages (train/io/tf_event.h): first the
// file_version event "brain.Event:2", then one event per metrics.jsonl record, at its step,
// whose summary holds every finite number of the record as a float simple_value:
//   <group>/<name>        the per-step numbers by metrics.jsonl name, grouped into sections:
//                         train/loss, train/lr, val/val_loss, sinks/sink_rate (step_record.cpp)
//   <name>/layer_LL       each per-layer number, LL the layer index zero-padded to two digits
//                         (more past 100 layers): dim_disparity/layer_03, sink_score/layer_00
//   sink_mass/layer_LL,   per-head values: their mean over the heads, finite ones (the report's
//   alpha0/layer_LL       heat map)
//   massive_top/layer_LL  the largest |x| (the first of the top three)
// Left to metrics.jsonl and metrics.h5: var_pos and var_pos_normed (profiles over positions),
// batch_hash (not a number), and values that are null there (NaN, inf). docs/TENSORBOARD.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/io/step_record.h"
#include "train/io/tf_event.h"

namespace sinklab::train {

class TensorBoardLog {
 public:
  // keep_before_step -1 starts fresh: the folder's earlier sinklab events files are removed and
  // a new one is created. keep_before_step >= 0 (a resume) cuts the folder's sinklab events
  // files back to the records with step < keep_before_step (cut_back_events_file) and appends
  // to the newest; a new file when there is none.
  TensorBoardLog(const std::string& dir, int64_t keep_before_step);
  ~TensorBoardLog();
  TensorBoardLog(const TensorBoardLog&) = delete;
  TensorBoardLog& operator=(const TensorBoardLog&) = delete;
  // Appends the record's event in one write(2): TensorBoard reading the file sees each step as
  // it is logged. Throws IOError naming the file when the disk refuses.
  void write(const StepRecord& record);
  // fsync: everything written is on disk when it returns.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void append(const std::string& framed);
  std::string path_;
  int fd_ = -1;
};

// The record's scalars as TensorBoard tags (above), finite values only, in metrics.jsonl's order.
std::vector<ScalarValue> tensorboard_scalars(const StepRecord& record);

// "events.out.tfevents.<unix_seconds>.<host>.sinklab"
std::string events_file_name(int64_t unix_seconds, const std::string& host);

// The events files sinklab wrote in `dir` (events.out.tfevents.*.sinklab), sorted by name:
// by creation time.
std::vector<std::string> sinklab_events_files(const std::string& dir);

// Cuts a sinklab events file back, in place, to its file_version record and the records after it
// with step < keep_before_step (steps are written in increasing order). Reading stops at a torn
// or damaged record (a crash while appending), which is cut off with everything after it.
// Returns the bytes kept: 0 when the file does not start with a good file_version record (it is
// then emptied). Throws IOError naming the file when a record with good CRCs does not parse.
uint64_t cut_back_events_file(const std::string& path, int64_t keep_before_step);

}  // namespace sinklab::train
