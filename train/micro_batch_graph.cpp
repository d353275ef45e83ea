#include "train/micro_batch_graph.h"

#include "autograd/engine.h"
#include "core/error.h"
#include "ops/elementwise.h"
#include "ops/remembered_operands.h"
#include "train/model.h"

namespace sinklab::train {

std::string MicroBatchGraph::unavailable_because(const RunConfig& config, int world_size) {
  if (!config.run.cuda_graph) return "run.cuda_graph is off";
  if (!parse_device(config.run.device).is_cuda())
    return "run.device is " + config.run.device + ": the CPU runs every op when it is called";
  if (world_size > 1)
    return "data parallel (" + std::to_string(world_size) +
           " ranks): the gradient buckets' reductions start from the backward's host hooks";
  if (config.run.profile) return "run.profile synchronises the device at every op";
  return "";
}

MicroBatchGraph::MicroBatchGraph(const GPT& model, int64_t accumulation)
    : model_(model), accumulation_(accumulation) {}

MicroBatchGraph::~MicroBatchGraph() = default;

int64_t MicroBatchGraph::nodes() const { return recording_ ? recording_->nodes() : 0; }

void MicroBatchGraph::record() {
  const Device device = model_.params().flat_values().device();
  loss_ = Tensor::empty({}, DType::F64, device);  // ()
  const double inverse = 1.0 / static_cast<double>(accumulation_);
  // No remembered operand copy made outside the recording is freed inside it, nor one made
  // inside it held after (ops/remembered_operands.h).
  ops::forget_remembered_operands();
  std::string why;
  recording_ = device_runtime(device).record(
      [&] {
        ForwardResult out = model_.forward(inputs_, targets_, nullptr);
        loss_.copy_from(out.loss.to_dtype(DType::F64));
        autograd::backward(ops::scale(out.loss, inverse));
        ops::forget_remembered_operands();
      },
      why);
  if (!recording_) {
    off_reason_ = "recording the micro-batch failed: " + why;
    return;
  }
  // What the eager steps left in the pool goes back before the first replay maps the graph's
  // own memory (run.metrics every N > 1 steps grows the pool again: config.h's MemoryEstimate).
  device_runtime(device).release_cached_memory();
}

std::optional<double> MicroBatchGraph::run(const Batch& batch) {
  if (given_up()) return std::nullopt;
  const Device device = model_.params().flat_values().device();
  if (!inputs_.defined()) {
    inputs_ = Tensor::empty(batch.inputs.shape(), DType::I32, device);    // (B, T)
    targets_ = Tensor::empty(batch.targets.shape(), DType::I32, device);  // (B, T)
  }
  SINKLAB_CHECK(batch.inputs.shape() == inputs_.shape() &&
                    batch.targets.shape() == targets_.shape(),
                ShapeError,
                "cuda graph: a micro-batch of " << batch.inputs.str() << " after "
                                                << inputs_.str(),
                "a recording replays one shape: every training micro-batch has one");
  inputs_.copy_from(batch.inputs);
  targets_.copy_from(batch.targets);
  if (!recording_) {
    record();
    if (!recording_) return std::nullopt;
  }
  try {
    recording_->replay();
  } catch (const std::exception& e) {  // the launch was refused: nothing of it ran
    off_reason_ = std::string("a replay failed: ") + e.what();
    recording_.reset();
    return std::nullopt;
  }
  ++replays_;
  return loss_.item();
}

}  // namespace sinklab::train
