// CPU reference kernels for rotary position embedding (rotate_half convention, see ops/rope.h).
// x and out contiguous (B, T, NH, HS), HS even; angles computed in double.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sinklab::cpu {

// out = each pair (i, i + HS/2) of x rotated by +angle(t, i).
void rope_forward(const Tensor& x, double theta, int64_t position_offset, Tensor& out);
// out = each pair of grad rotated by -angle(t, i) (the transpose of the forward rotation).
void rope_backward(const Tensor& grad, double theta, int64_t position_offset, Tensor& out);

}  // namespace sinklab::cpu
