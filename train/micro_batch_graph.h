// run.cuda_graph: a training micro-batch (forward, loss, backward into the flat gradients)
// recorded once as one device recording (a CUDA graph, DeviceRuntime::record) and replayed at
// every later micro-batch of the steps without sink metrics: about a thousand kernel launches of
// a GPT-2 micro-batch become one.
//
// A recording replays the same kernels on the same buffers, so the micro-batch's token ids go
// through two fixed device buffers, (B, T) each, that every replay reads: the batch is copied
// into them first. The kernels' own checks of the token ids read back to the host, which a
// recording cannot hold, so they are skipped there; the run checked every token of its data
// against model.vocab_size when it opened the files. The loss goes to a fixed one-element f64
// buffer, read after the replay (the eager step reads it at the same point).
//
// The trainer records after the process has run one eager step of the variant (cuBLASLt's plans
// and workspace, cuDNN's plans, the RoPE tables and the kernels' shared-memory opt-ins are made
// then, once). Metrics steps, evaluation and sampling stay eager. Gradient clipping, the
// non-finite check and AdamW stay outside the recording (they read the gradient norm on the
// host). Where a recording cannot be made or replayed it is given up for the rest of the run,
// the step runs eagerly, and off_reason() says why (the trainer prints it once).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/device_runtime.h"
#include "core/tensor.h"
#include "train/config.h"
#include "train/data/data_loader.h"

namespace sinklab::train {

class GPT;

class MicroBatchGraph {
 public:
  // Why a run of `config` over `world_size` processes cannot record its micro-batches ("" when
  // it can): run.cuda_graph off, a CPU device, data parallelism, run.profile.
  static std::string unavailable_because(const RunConfig& config, int world_size);

  // accumulation: micro-batches per step (each backward is of loss / accumulation).
  MicroBatchGraph(const GPT& model, int64_t accumulation);
  ~MicroBatchGraph();
  MicroBatchGraph(const MicroBatchGraph&) = delete;
  MicroBatchGraph& operator=(const MicroBatchGraph&) = delete;

  // One micro-batch of `batch` ((B, T) int32 inputs and targets on the CPU): its gradients are
  // added to the model's, and its loss returned. Records at the first call (then replays what it
  // recorded to run it), replays after. nullopt when it cannot: nothing of this micro-batch ran,
  // the caller runs it eagerly, and every later call returns nullopt.
  std::optional<double> run(const Batch& batch);

  bool given_up() const { return !off_reason_.empty(); }
  const std::string& off_reason() const { return off_reason_; }
  int64_t replays() const { return replays_; }
  int64_t nodes() const;  // the device operations recorded (0 before the recording)

 private:
  void record();

  const GPT& model_;
  int64_t accumulation_;
  Tensor inputs_, targets_;  // (B, T) int32 on the model's device: what every replay reads
  Tensor loss_;              // () f64 on the model's device: the replay's loss
  std::unique_ptr<DeviceRuntime::Recording> recording_;
  std::string off_reason_;
  int64_t replays_ = 0;
};

}  // namespace sinklab::train
