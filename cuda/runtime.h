// The CUDA runtime of sinklab: device detection, the stream every kernel runs on, and the
// stream-ordered allocator (cudaMallocAsync pool, no per-step cudaMalloc). initialize() installs
// the device memory hooks of core/ and the CUDA slots of every op in the op table.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "core/device_runtime.h"
#include "core/tensor.h"

namespace sinklab::cuda {

// Returns true when a CUDA device is present; installs hooks and kernels on first call.
bool initialize();
bool available();
// The stream kernels are queued on now: the compute stream (one per process), or the side stream
// inside a SideStreamScope. Every launcher, allocation and copy uses it.
cudaStream_t stream();
bool inside_side_stream_scope();  // whether stream() is the side stream (on this thread)
void synchronize();  // waits for the compute stream
// dst (n) = src (n) converted between f32, f64 and bf16 (rounded to nearest even; f64 reaches
// bf16 through f32), queued on stream(); false for another pair. Tensor::to_dtype's device hook.
bool convert_elements(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n);

// Work queued inside a SideStreamScope (on this thread) goes to the side stream, which starts it
// after everything queued on the compute stream before its start point: by default the scope's
// opening; with a SideStreamStart, the moment mark_side_stream_start() made it. The trainer
// marks the end of the forward whose activations the sink metrics read, queues the backward,
// then opens the scope: the metrics run while the compute stream works through that backward
// and the update. The side stream has the lowest priority, the compute stream the highest, so
// the metrics' blocks fill the SMs the training kernels leave idle; set_side_stream_priority
// (SidePriority::Equal, run.metrics_priority: equal) gives both the same priority (a benchmarking
// switch: scripts/bench_gpu.sh BENCH_METRICS_EQUAL=1).
// Memory allocated inside is freed on the side stream when freed inside; anything the side work
// reads or made must outlive join_side_stream(), and the compute stream must not write what it
// reads before then. Scopes do not nest. No products inside: the cuBLAS handles and cuBLASLt's
// workspace are shared by both streams (the metrics' reductions need none).
class SideStreamStart;
SideStreamStart mark_side_stream_start();  // the next start point: the compute stream's now
// A start point; only mark_side_stream_start() makes one, and a later mark supersedes it (a
// scope opened with a superseded start is refused).
class SideStreamStart {
 private:
  explicit SideStreamStart(uint64_t mark) : mark_(mark) {}
  uint64_t mark_;
  friend SideStreamStart mark_side_stream_start();
  friend class SideStreamScope;
};
class SideStreamScope {
 public:
  SideStreamScope();                                // starts after the work queued so far
  explicit SideStreamScope(const SideStreamStart& start);  // starts at that mark
  ~SideStreamScope();
  SideStreamScope(const SideStreamScope&) = delete;
  SideStreamScope& operator=(const SideStreamScope&) = delete;
};
// The compute stream waits (on the device, the host goes on) for all side work queued so far.
void join_side_stream();
// Side scopes opened from now on queue on a side stream of `priority` (Low by default); the
// compute stream first joins the side stream it leaves. Call it outside a scope (the trainer
// does, once, before its first step).
void set_side_stream_priority(SidePriority priority);
// Bytes held by tensors in the stream-ordered pool and by recorded CUDA graphs' allocations
// (cuda/graph_recording.h), in MiB.
double memory_in_use_mib();
// The most of the same since the process started: the pool's and the graphs' high-water marks
// (their sum, an upper bound on the two's peak together), in MiB.
double memory_peak_mib();
double memory_capacity_mib();  // the current device's global memory (cudaMemGetInfo's total), in MiB
// Waits for the compute and side streams, then trims the stream-ordered pool to what tensors
// hold (DeviceRuntime::release_cached_memory).
void release_cached_memory();
double peak_bf16_tflops();   // dense bf16 peak of device 0 when known (H100/H200, A100), else 0
// An attribute of the current device (cudaDeviceGetAttribute): the opt-in shared memory per
// block, the SM count, the compute capability.
int device_attribute(cudaDeviceAttr attribute);

// Whether every buffer (null ones ignored) is 16-byte aligned: the condition of the kernels'
// 16-byte (float4 / uint4) loads and stores.
inline bool aligned16(std::initializer_list<const void*> buffers) {
  for (const void* p : buffers)
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Launch geometry for n elements with `threads` per block.
inline unsigned blocks_for(int64_t n, int threads = 256) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// Installed by each kernel file (called from initialize()).
void install_elementwise_kernels();   // cuda/elementwise.cu
void install_matmul_kernels();        // cuda/matmul.cu
void install_norm_kernels();          // cuda/norms.cu: layernorm, rmsnorm, headwise_rmsnorm
void install_activation_kernels();    // cuda/activations.cu: gelu, silu, swiglu(_packed)
void install_embedding_kernels();     // cuda/embedding.cu
void install_attention_kernels();     // cuda/attention.cu: attention, probabilities, key mass
void install_rope_kernels();          // cuda/rope.cu: rope, rope_qkv
void install_cross_entropy_kernels(); // cuda/cross_entropy.cu
void install_statistics_kernels();    // cuda/statistics.cu: row statistics, order statistics
void install_optimizer_kernels();     // cuda/optimizer.cu: adamw_update, sum_of_squares, scale
void install_device_runtime();        // cuda/device_runtime.cpp: core/device_runtime.h's CUDA one

}  // namespace sinklab::cuda
