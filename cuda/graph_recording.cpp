#include "cuda/graph_recording.h"

#include <cuda_runtime.h>

#include <exception>
#include <sstream>
#include <vector>

#include "cuda/check.h"
#include "cuda/runtime.h"

namespace sinklab::cuda {

namespace {

class GraphRecording final : public DeviceRuntime::Recording {
 public:
  GraphRecording(cudaGraph_t graph, cudaGraphExec_t exec, int64_t nodes)
      : graph_(graph), exec_(exec), nodes_(nodes) {}
  ~GraphRecording() override {
    cudaGraphExecDestroy(exec_);  // no throw from a destructor
    cudaGraphDestroy(graph_);
  }
  GraphRecording(const GraphRecording&) = delete;
  GraphRecording& operator=(const GraphRecording&) = delete;
  void replay() override { SINKLAB_CUDA_CHECK(cudaGraphLaunch(exec_, stream())); }
  int64_t nodes() const override { return nodes_; }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  int64_t nodes_;
};

// The graph's nodes and how many of them allocate and free memory.
struct NodeCounts {
  int64_t all = 0, allocations = 0, frees = 0;
};
NodeCounts count_nodes(cudaGraph_t graph) {
  size_t n = 0;
  SINKLAB_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) SINKLAB_CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  NodeCounts counts;
  counts.all = static_cast<int64_t>(n);
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type{};
    SINKLAB_CUDA_CHECK(cudaGraphNodeGetType(node, &type));
    counts.allocations += type == cudaGraphNodeTypeMemAlloc;
    counts.frees += type == cudaGraphNodeTypeMemFree;
  }
  return counts;
}

}  // namespace

std::unique_ptr<DeviceRuntime::Recording> record_graph(const std::function<void()>& work,
                                                       std::string& why) {
  SINKLAB_CHECK(!inside_side_stream_scope(), ValueError,
                "recording a CUDA graph inside a SideStreamScope",
                "record the compute stream's work: close the side scope first");
  const cudaStream_t s = stream();
  SINKLAB_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  std::string failure;
  try {
    work();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(s, &graph);
  if (failure.empty() && ended != cudaSuccess)
    failure = std::string("the capture ended with ") + cudaGetErrorName(ended) + ": " +
              cudaGetErrorString(ended) + " (work left on another stream, or a call a capture "
              "cannot hold)";
  cudaGraphExec_t exec = nullptr;
  NodeCounts counts;
  if (failure.empty()) {
    counts = count_nodes(graph);
    if (counts.allocations != counts.frees) {
      std::ostringstream text;
      text << counts.allocations - counts.frees << " of the " << counts.allocations
           << " allocations made while recording outlive the work (a tensor made inside it "
              "is still held: a cache, or a result kept)";
      failure = text.str();
    }
  }
  if (failure.empty()) {
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    if (made != cudaSuccess)
      failure = std::string("instantiating the graph failed: ") + cudaGetErrorName(made) + ": " +
                cudaGetErrorString(made);
  }
  if (!failure.empty()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();  // a refused call inside the capture leaves its error behind
    why = failure;
    return nullptr;
  }
  return std::make_unique<GraphRecording>(graph, exec, counts.all);
}

}  // namespace sinklab::cuda
