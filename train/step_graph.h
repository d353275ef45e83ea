// run.cuda_graph: a training step without sink metrics (its micro-batches' forward, loss and
// backward into the flat gradients, the gradients' norm, clipping and AdamW) recorded once as
// device recordings (CUDA graphs, DeviceRuntime::record) and replayed at every later such step:
// the 2,082 device operations of a GPT-2 step (B=32, T=1024, on an H100) become one launch.
// With one micro-batch a step it is one recording; with gradient accumulation, one for the
// micro-batches before the last and one for the last with the update.
//
// A recording replays the same kernels on the same buffers, so each micro-batch's token ids go
// through two fixed device buffers, (B, T) each, that every replay reads: the batch is copied
// into them first. The kernels' own checks of the token ids read back to the host, which a
// recording cannot hold, so they are skipped there; the run checked every token of its data
// against model.vocab_size when it opened the files. The step's loss is summed on the device
// and the update reads it with the gradients' sum of squares from a fixed two-element buffer
// (ops::adamw_update_scheduled), and the learning rate and bias corrections from AdamW's
// schedule, written before each replay: the host reads both results once, after the step.
//
// The trainer records after the process has run one eager step of the variant (cuBLASLt's plans
// and workspace, cuDNN's plans, the RoPE tables and the kernels' shared-memory opt-ins are made
// then, once). Metrics steps, evaluation and sampling stay eager. Where a recording cannot be
// made or replayed it is given up for the rest of the run, the step runs eagerly, and
// off_reason() says why (the trainer prints it once).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device_runtime.h"
#include "core/tensor.h"
#include "ops/cross_entropy.h"
#include "train/config.h"
#include "train/data/data_loader.h"

namespace sinklab::train {

class AdamW;
class GPT;

class StepGraph {
 public:
  // Why a run of `config` over `world_size` processes cannot record its steps ("" when it can):
  // run.cuda_graph off, a CPU device, data parallelism, run.profile.
  static std::string unavailable_because(const RunConfig& config, int world_size);

  // accumulation: micro-batches per step (each backward is of loss / accumulation); max_norm:
  // optim.grad_clip; logits_after: the forward's (GPT::forward, logits_after_loss).
  StepGraph(GPT& model, AdamW& optimizer, int64_t accumulation, double max_norm,
            ops::CrossEntropyLogits logits_after);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  struct Result {
    double loss_sum = 0;        // the micro-batches' losses, summed in order
    double sum_of_squares = 0;  // of the accumulated gradients (the global norm's square)
  };
  // One step of the `accumulation` micro-batches `batches` ((B, T) int32 inputs and targets on
  // the CPU) at learning rate lr: gradients accumulated into the model's (which the caller
  // zeroed), then the update, skipped on the device where the loss or the norm is not finite
  // (the caller then counts the step skipped and AdamW's step count stays). Records at the first
  // call, replays after. nullopt when it cannot: nothing of the step ran, the caller runs it
  // eagerly, and every later call returns nullopt.
  std::optional<Result> run(const std::vector<Batch>& batches, double lr);

  bool given_up() const { return !off_reason_.empty(); }
  const std::string& off_reason() const { return off_reason_; }
  int64_t replays() const { return replays_; }  // steps replayed
  int64_t nodes() const;  // the device operations recorded (0 before the recording)

 private:
  bool record();  // both recordings, before anything replays; false: given up
  // Queues one micro-batch from the input buffers: forward, loss into results_[0], backward.
  void queue_micro_batch();

  GPT& model_;
  AdamW& optimizer_;
  int64_t accumulation_;
  double max_norm_;
  ops::CrossEntropyLogits logits_after_;
  Tensor inputs_, targets_;  // (B, T) int32 on the model's device: what every replay reads
  Tensor results_;           // (2) f64 on the model's device: the loss sum, the sum of squares
  std::unique_ptr<DeviceRuntime::Recording> micro_;  // a micro-batch before the last
  std::unique_ptr<DeviceRuntime::Recording> last_;   // the last micro-batch and the update
  std::string off_reason_;
  int64_t replays_ = 0;
};

}  // namespace sinklab::train
