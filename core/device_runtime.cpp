#include "core/device_runtime.h"

#include <unistd.h>

#include <fstream>
#include <limits>
#include <string>

#include "core/error.h"

namespace sinklab {

namespace {

// The host: work runs when it is called, so there is nothing to wait for.
class CpuRuntime final : public DeviceRuntime {
 public:
  void synchronize() override {}
  double memory_in_use_mib() override {  // the process's resident set
    std::ifstream statm("/proc/self/statm");
    double pages = 0, resident = 0;
    if (!(statm >> pages >> resident)) return std::numeric_limits<double>::quiet_NaN();
    return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
  }
  double memory_peak_mib() override {  // the resident set's high-water mark
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "N kB"
    return std::numeric_limits<double>::quiet_NaN();
  }
  double peak_bf16_tflops() override { return 0.0; }
  double memory_capacity_mib() override {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0.0;
    return static_cast<double>(pages) * static_cast<double>(page) / (1024.0 * 1024.0);
  }
  std::unique_ptr<SideMark> mark_side_start() override { return std::make_unique<SideMark>(); }
  void run_on_side(const SideMark&, const std::function<void()>& work) override { work(); }
  void join_side() override {}
  void set_side_priority(SidePriority) override {}
  std::unique_ptr<Recording> record(const std::function<void()>&, std::string& why) override {
    why = "the CPU runs every op when it is called: there is no queue to record";
    return nullptr;
  }
  void release_cached_memory() override {}
};

CpuRuntime g_cpu;
DeviceRuntime* g_cuda = nullptr;

}  // namespace

DeviceRuntime& device_runtime(Device device) {
  if (device.is_cpu()) return g_cpu;
  SINKLAB_CHECK(g_cuda != nullptr, DeviceError,
                "no runtime is installed for " << device.str(),
                "build with CUDA (-DSINKLAB_CUDA=ON) on a machine with a GPU, or use "
                "run.device: cpu");
  return *g_cuda;
}

bool device_available(DeviceKind kind) { return kind == DeviceKind::CPU || g_cuda != nullptr; }

Device resolve_device(const std::string& text) {
  if (text == "auto") return device_available(DeviceKind::CUDA) ? Device::cuda(0) : Device::cpu();
  return parse_device(text);
}

void install_device_runtime(DeviceKind kind, DeviceRuntime* runtime) {
  SINKLAB_CHECK(kind == DeviceKind::CUDA, ValueError,
                "install_device_runtime: the CPU runtime is built in",
                "install runtimes for other device kinds only");
  g_cuda = runtime;
}

}  // namespace sinklab
