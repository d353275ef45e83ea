// What the layers above the kernels ask of a device besides kernels: waiting for its queued
// work, the memory in use, its peak throughput, and side work that overlaps the main queue (the
// sink metrics run there while the backward runs). The CPU runtime is built in; cuda/ installs
// the CUDA one in cuda::initialize(). Code above ops/ asks device_runtime(device) and never
// branches on the backend itself.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/device.h"

namespace sinklab {

// The side queue's priority against the main queue's (run.metrics_priority): Low, the default,
// lets side work fill what the main queue leaves idle; Equal gives both the same priority (a
// benchmarking switch).
enum class SidePriority { Low, Equal };

class DeviceRuntime {
 public:
  // A point in the device's main queue (CUDA: an event on the compute stream).
  class SideMark {
   public:
    virtual ~SideMark() = default;
  };

  // Device work recorded once and replayed as one launch (CUDA: an instantiated CUDA graph).
  class Recording {
   public:
    virtual ~Recording() = default;
    // Queues the recorded work on the main queue again, on the buffers it was recorded with.
    // Throws DeviceError when the device refuses; the recording is then of no further use.
    virtual void replay() = 0;
    virtual int64_t nodes() const = 0;  // the device operations in it (CUDA: the graph's nodes)
  };

  virtual ~DeviceRuntime() = default;
  virtual void synchronize() = 0;            // waits for all work queued on the main queue
  virtual double memory_in_use_mib() = 0;    // tensors' memory (CPU: the resident set), or NaN
  // The most memory_in_use_mib() has been since the process started (CUDA: the pool's and the
  // recorded graphs' high-water marks, sampled by the device at every allocation, so a peak
  // inside a step counts; CPU: the resident set's high-water mark, VmHWM), or NaN.
  virtual double memory_peak_mib() = 0;
  virtual double peak_bf16_tflops() = 0;     // dense bf16 peak in TFLOP/s; 0 = unknown
  // All the memory the device has, in MiB (CPU: physical RAM; GPU: its global memory); 0 or
  // NaN = unknown. What a run may allocate is checked against it before allocating.
  virtual double memory_capacity_mib() = 0;
  // The main queue's present, where side work will start. A later mark supersedes it.
  virtual std::unique_ptr<SideMark> mark_side_start() = 0;
  // Queues `work`'s device work on the side queue, after `mark` (CPU: runs it now). What it
  // reads must outlive join_side().
  virtual void run_on_side(const SideMark& mark, const std::function<void()>& work) = 0;
  // The main queue waits (on the device; the host goes on) for all side work queued so far.
  virtual void join_side() = 0;
  // Side work queued from now on runs at `priority`. Call it with no side work pending (the
  // trainer does, before its first step). The CPU has no queues: nothing to set.
  virtual void set_side_priority(SidePriority priority) = 0;
  // Records the device work `work` queues on the main queue, without running it: nothing it
  // queues has run when this returns; replay() runs it. The host-side effects of `work` happen
  // once, now. What it reads or writes must stay where it is for every replay, and every
  // allocation it makes must be freed inside it (a tensor made inside must not outlive it).
  // Returns null and says why in `why` where the device cannot record (the CPU runs each op
  // when it is called) or `work` did something a recording cannot hold (a wait for the device,
  // a copy to the host): then nothing it queued has run, and the caller runs the work itself.
  virtual std::unique_ptr<Recording> record(const std::function<void()>& work,
                                            std::string& why) = 0;
  // Waits for the main queue, then gives the memory the allocator keeps for reuse but no tensor
  // holds back to the device (CUDA: the stream-ordered pool trimmed). The trainer calls it once a
  // recording holds its own copy of what an eager step had left in the pool. CPU: nothing.
  virtual void release_cached_memory() = 0;
};

// The runtime of `device`'s kind. Throws DeviceError when none is installed (a CUDA device in a
// build without CUDA, or before cuda::initialize()).
DeviceRuntime& device_runtime(Device device);
// Installs the runtime of a kind (not owned; it lives as long as the process).
void install_device_runtime(DeviceKind kind, DeviceRuntime* runtime);
// Whether a runtime of `kind` is installed: always for the CPU; for CUDA, a CUDA build on a
// machine with a GPU (cuda::initialize() installs it only there).
bool device_available(DeviceKind kind);
// "auto": cuda:0 where device_available(CUDA), else cpu (the commands that read a checkpoint:
// forward, generate, probe); anything else as parse_device reads it.
Device resolve_device(const std::string& text);

}  // namespace sinklab
