// Rotary position embedding, Hugging Face LLaMA "rotate_half" convention.
//   rope(x, theta, offset): x (B, T, NH, HS), HS even -> (B, T, NH, HS). For i < HS/2:
//     freq_i = theta^(-2i/HS), angle = (t + offset) * freq_i,
//     out[i]        = x[i] cos(angle) - x[i + HS/2] sin(angle)
//     out[i + HS/2] = x[i + HS/2] cos(angle) + x[i] sin(angle)
//   Each pair (i, i + HS/2) is rotated by angle; backward rotates the gradient by -angle.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor rope(const Tensor& x, double theta = 10000.0, int64_t position_offset = 0);

// out = x rotated by +angle (forward) or -angle (backward, applied to the gradient).
using RopeFn = void (*)(const Tensor& x, double theta, int64_t position_offset, Tensor& out);
extern OpKernels<RopeFn, RopeFn> rope_kernels;

}  // namespace sinklab::ops
