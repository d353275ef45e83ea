// DeviceRuntime::record on a GPU: the work queued on the compute stream, captured into a CUDA
// graph (stream capture, this thread only) and instantiated, to be launched again as one unit.
// The trainer records a training step without metrics once, its micro-batches' forward and
// backward with the gradients' norm, clipping and AdamW (run.cuda_graph, train/step_graph.h),
// and replays it on the steps after.
//
// What a capture cannot hold makes the recording fail cleanly (null, with the reason): a wait
// for the device or a copy to pageable host memory inside the work (cudaStreamSynchronize
// refuses during a capture, and the check that called it throws), work left on the side stream,
// or an allocation the work made and did not free (its memory would belong to the graph). The
// tensors the work makes come from the graph's own allocation nodes: their addresses are the
// same at every launch, and the graph keeps that memory between launches (memory_in_use_mib
// counts it).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/device_runtime.h"

namespace sinklab::cuda {

std::unique_ptr<DeviceRuntime::Recording> record_graph(const std::function<void()>& work,
                                                       std::string& why);

}  // namespace sinklab::cuda
