// CPU reference kernels for rotary position embedding (rotate_half convention, see ops/rope.h).
// rope: x and out contiguous (B, T, NH, HS), HS even. rope_qkv: qkv and out contiguous
// (B, T, 3C), C = n_head * HS, HS even: the q part (columns [0, C)) and the k part ([C, 2C)) of
// each row rotated as rope rotates (B, T, NH, HS) heads, by the same per-element code (equal to
// rope on the parts bit for bit), the v part ([2C, 3C)) copied. Angles computed in double.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sinklab::cpu {

// out = each pair (i, i + HS/2) of x rotated by +angle(t, i).
void rope_forward(const Tensor& x, double theta, int64_t position_offset, Tensor& out);
// out = each pair of grad rotated by -angle(t, i) (the transpose of the forward rotation).
void rope_backward(const Tensor& grad, double theta, int64_t position_offset, Tensor& out);

// out = qkv with its q and k heads rotated by +angle, its v part copied.
void rope_qkv_forward(const Tensor& qkv, int64_t n_head, double theta, int64_t position_offset,
                      Tensor& out);
// out = grad with its q and k heads rotated by -angle, its v part copied.
void rope_qkv_backward(const Tensor& grad, int64_t n_head, double theta, int64_t position_offset,
                       Tensor& out);

}  // namespace sinklab::cpu
