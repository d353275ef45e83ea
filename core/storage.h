// A block of memory on one device, shared by every tensor that views it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace sinklab {

// Device memory functions, installed by cuda/ when it is built (core stays CUDA-free).
struct DeviceMemoryHooks {
  void* (*allocate)(size_t bytes, int device) = nullptr;
  void (*release)(void* ptr, int device) = nullptr;
  // kind: 0 host->device, 1 device->host, 2 device->device
  void (*copy)(void* dst, const void* src, size_t bytes, int kind, int device) = nullptr;
  // Sets n contiguous elements of dtype (a DType value) to value.
  void (*fill)(void* dst, int64_t n, int dtype, double value, int device) = nullptr;
  // Converts n contiguous elements between float dtypes (DType values: f32, f64, bf16); false
  // for another pair.
  bool (*convert)(void* dst, int dst_dtype, const void* src, int src_dtype, int64_t n,
                  int device) = nullptr;
  // Waits until every queued kernel on the device has finished (profiling, timing).
  void (*synchronize)(int device) = nullptr;
};

class Tensor;
// Element-wise copy between same-shape tensors on one CUDA device, any strides.
using StridedCopyFn = void (*)(Tensor& dst, const Tensor& src);
void install_cuda_strided_copy(StridedCopyFn fn);
StridedCopyFn cuda_strided_copy();
void install_device_memory_hooks(const DeviceMemoryHooks& hooks);
const DeviceMemoryHooks& device_memory_hooks();
bool cuda_backend_available();

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

}  // namespace sinklab
