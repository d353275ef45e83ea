// The CUDA DeviceRuntime (core/device_runtime.h): the compute stream is the main queue, the
// low-priority side stream the side queue. cuda::initialize() installs it.
#include "core/device_runtime.h"
#include "cuda/graph_recording.h"
#include "cuda/runtime.h"

namespace sinklab::cuda {

namespace {

class CudaRuntime final : public DeviceRuntime {
 public:
  class Mark final : public SideMark {
   public:
    explicit Mark(SideStreamStart start) : start(start) {}
    SideStreamStart start;
  };
  void synchronize() override { cuda::synchronize(); }
  double memory_in_use_mib() override { return cuda::memory_in_use_mib(); }
  double memory_peak_mib() override { return cuda::memory_peak_mib(); }
  double peak_bf16_tflops() override { return cuda::peak_bf16_tflops(); }
  double memory_capacity_mib() override { return cuda::memory_capacity_mib(); }
  std::unique_ptr<SideMark> mark_side_start() override {
    return std::make_unique<Mark>(mark_side_stream_start());
  }
  void run_on_side(const SideMark& mark, const std::function<void()>& work) override {
    SideStreamScope side(static_cast<const Mark&>(mark).start);
    work();
  }
  void join_side() override { join_side_stream(); }
  void set_side_priority(SidePriority priority) override { set_side_stream_priority(priority); }
  std::unique_ptr<Recording> record(const std::function<void()>& work,
                                    std::string& why) override {
    return record_graph(work, why);
  }
  void release_cached_memory() override { cuda::release_cached_memory(); }
};

CudaRuntime g_runtime;

}  // namespace

void install_device_runtime() { sinklab::install_device_runtime(DeviceKind::CUDA, &g_runtime); }

}  // namespace sinklab::cuda
