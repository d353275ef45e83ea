#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/error.h"

namespace sinklab {

namespace {
DeviceMemoryHooks g_hooks;
StridedCopyFn g_strided_copy = nullptr;
constexpr size_t kCpuAlignment = 64;

// A training step frees and allocates the same activation buffers every step. glibc serves
// blocks above its mmap threshold (dynamic, from 128 KiB) with fresh mappings and returns freed
// heap tops to the system, so each step paid page faults on every large buffer again (0.1 s of
// system time per step of GPT-2 4x256 at T=256, B=8). Keeping them in the heap reuses the pages.
void keep_cpu_buffers_in_heap() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);   // the largest glibc accepts (64-bit)
    mallopt(M_TRIM_THRESHOLD, 512 << 20);  // free heap top kept up to 512 MiB
    return true;
  }();
  (void)done;
#endif
}
}  // namespace

void install_device_memory_hooks(const DeviceMemoryHooks& hooks) { g_hooks = hooks; }
const DeviceMemoryHooks& device_memory_hooks() { return g_hooks; }
bool cuda_backend_available() { return g_hooks.allocate != nullptr; }
void install_cuda_strided_copy(StridedCopyFn fn) { g_strided_copy = fn; }
StridedCopyFn cuda_strided_copy() { return g_strided_copy; }

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    keep_cpu_buffers_in_heap();
    const size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    if (rounded >= bytes)  // else bytes + alignment wrapped around: no allocation can hold it
      data_ = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
    SINKLAB_CHECK(data_ != nullptr, DeviceError,
                  "cannot allocate " << bytes << " bytes (" << bytes / (1024.0 * 1024 * 1024)
                                     << " GiB) on the CPU",
                  "free memory, or make the model, batch or sequence smaller");
    return;
  }
  SINKLAB_CHECK(cuda_backend_available(), DeviceError,
                "cannot allocate " << bytes << " bytes on " << device.str()
                                   << ": this build has no CUDA backend",
                "rebuild with CUDA (cmake -DSINKLAB_CUDA=ON) or use device: cpu");
  data_ = g_hooks.allocate(bytes, device.index);
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu())
    std::free(data_);
  else if (g_hooks.release)
    g_hooks.release(data_, device_.index);
}

}  // namespace sinklab
