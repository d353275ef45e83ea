// Several small tensors in one flat buffer: every element of each part (any layout), part after
// part, each in row-major order. The sink metrics gather their per-layer device results this
// way, so that one transfer brings them to the host. On a GPU the parts are copied by one kernel
// launch per batch of parts (a hook cuda/ installs), not one strided copy each.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace sinklab {

// parts: one dtype and device, at least one. Returns (total elements) contiguous.
Tensor concat_flat(const std::vector<Tensor>& parts);

// CUDA slot: copies parts into flat (contiguous, their dtype, on their CUDA device) at
// consecutive offsets; false when it does not handle them (the caller copies part by part).
using ConcatFlatFn = bool (*)(const std::vector<Tensor>& parts, Tensor& flat);
void install_cuda_concat_flat(ConcatFlatFn fn);

}  // namespace sinklab
