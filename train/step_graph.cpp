#include "train/step_graph.h"

#include "autograd/engine.h"
#include "core/error.h"
#include "core/tensor_math.h"
#include "ops/elementwise.h"
#include "ops/optimizer.h"
#include "ops/remembered_operands.h"
#include "train/model.h"
#include "train/optimizer.h"

namespace sinklab::train {

std::string StepGraph::unavailable_because(const RunConfig& config, int world_size) {
  if (!config.run.cuda_graph) return "run.cuda_graph is off";
  if (!parse_device(config.run.device).is_cuda())
    return "run.device is " + config.run.device + ": the CPU runs every op when it is called";
  if (world_size > 1)
    return "data parallel (" + std::to_string(world_size) +
           " ranks): the gradient buckets' reductions start from the backward's host hooks";
  if (config.run.profile) return "run.profile synchronises the device at every op";
  return "";
}

StepGraph::StepGraph(GPT& model, AdamW& optimizer, int64_t accumulation, double max_norm,
                     ops::CrossEntropyLogits logits_after)
    : model_(model),
      optimizer_(optimizer),
      accumulation_(accumulation),
      max_norm_(max_norm),
      logits_after_(logits_after) {}

StepGraph::~StepGraph() = default;

int64_t StepGraph::nodes() const {
  return (micro_ ? micro_->nodes() : 0) + (last_ ? last_->nodes() : 0);
}

void StepGraph::queue_micro_batch() {
  ForwardResult out = model_.forward(inputs_, targets_, nullptr, logits_after_);
  Tensor loss_sum = results_.narrow_view(0, 0, 1);  // (1) view
  add_into(loss_sum, out.loss.to_dtype(DType::F64).reshape_view({1}));
  autograd::backward(ops::scale(out.loss, 1.0 / static_cast<double>(accumulation_)));
  // No remembered operand copy made inside a recording is held after it
  // (ops/remembered_operands.h).
  ops::forget_remembered_operands();
}

bool StepGraph::record() {
  const Device device = model_.params().flat_values().device();
  DeviceRuntime& runtime = device_runtime(device);
  // No remembered operand copy made outside a recording is freed inside it.
  ops::forget_remembered_operands();
  std::string why;
  if (accumulation_ > 1) {
    micro_ = runtime.record([&] { queue_micro_batch(); }, why);
    if (!micro_) {
      off_reason_ = "recording a micro-batch failed: " + why;
      return false;
    }
  }
  last_ = runtime.record(
      [&] {
        queue_micro_batch();
        Tensor sum_of_squares = results_.narrow_view(0, 1, 1);  // (1) view
        ops::sum_of_squares_into(model_.params().flat_grads(), sum_of_squares);
        optimizer_.queue_scheduled_step(model_.params(), results_, max_norm_);
      },
      why);
  if (!last_) {
    micro_.reset();
    off_reason_ = "recording the step's last micro-batch and update failed: " + why;
    return false;
  }
  // What the eager steps left in the pool goes back before the first replay maps the graphs'
  // own memory (metrics every N > 1 steps grows the pool again: config.h's MemoryEstimate).
  runtime.release_cached_memory();
  return true;
}

std::optional<StepGraph::Result> StepGraph::run(const std::vector<Batch>& batches, double lr) {
  if (given_up()) return std::nullopt;
  SINKLAB_CHECK(static_cast<int64_t>(batches.size()) == accumulation_, ValueError,
                "cuda graph: " << batches.size() << " micro-batches for a step of "
                               << accumulation_,
                "pass one step's micro-batches");
  const Device device = model_.params().flat_values().device();
  const Batch& first = batches.front();
  if (!inputs_.defined()) {
    inputs_ = Tensor::empty(first.inputs.shape(), DType::I32, device);    // (B, T)
    targets_ = Tensor::empty(first.targets.shape(), DType::I32, device);  // (B, T)
    results_ = Tensor::zeros({2}, DType::F64, device);                    // (2)
  }
  for (const Batch& b : batches)
    SINKLAB_CHECK(b.inputs.shape() == inputs_.shape() && b.targets.shape() == targets_.shape(),
                  ShapeError,
                  "cuda graph: a micro-batch of " << b.inputs.str() << " after "
                                                  << inputs_.str(),
                  "a recording replays one shape: every training micro-batch has one");
  optimizer_.write_schedule(lr);  // before the first recording: the buffer it reads
  if (!last_ && !record()) return std::nullopt;
  results_.fill(0.0);
  for (size_t i = 0; i < batches.size(); ++i) {
    inputs_.copy_from(batches[i].inputs);  // waits for the replay before: it read them
    targets_.copy_from(batches[i].targets);
    DeviceRuntime::Recording& recording = i + 1 == batches.size() ? *last_ : *micro_;
    try {
      recording.replay();
    } catch (const std::exception& e) {
      SINKLAB_CHECK(i == 0, DeviceError,
                    "cuda graph: replaying micro-batch " << i << " failed after the ones "
                                                            "before it ran: " << e.what(),
                    "set run.cuda_graph: false");
      off_reason_ = std::string("a replay failed: ") + e.what();  // nothing of it ran
      micro_.reset();
      last_.reset();
      return std::nullopt;
    }
  }
  ++replays_;
  const std::vector<double> r = results_.to_doubles();  // (2) waits for the step
  return Result{r.at(0), r.at(1)};
}

}  // namespace sinklab::train
