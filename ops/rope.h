// Rotary position embedding, Hugging Face LLaMA "rotate_half" convention.
//   rope(x, theta, offset): x (B, T, NH, HS), HS even -> (B, T, NH, HS). For i < HS/2:
//     freq_i = theta^(-2i/HS), angle = (t + offset) * freq_i,
//     out[i]        = x[i] cos(angle) - x[i + HS/2] sin(angle)
//     out[i + HS/2] = x[i + HS/2] cos(angle) + x[i] sin(angle)
//   Each pair (i, i + HS/2) is rotated by angle; backward rotates the gradient by -angle.
//   rope_qkv(qkv, n_head, theta, offset): qkv (B, T, 3C), q | k | v side by side in each row
//     (one product of x with Wq, Wk, Wv stacked, as attention_qkv takes it), C = n_head * HS,
//     HS even -> (B, T, 3C) of qkv's dtype: the q part (columns [0, C)) and the k part
//     ([C, 2C)) rotated as rope rotates them as (B, T, NH, HS), the v part ([2C, 3C)) copied.
//     Backward: the gradient's q and k parts rotated by -angle, its v part passed through.
//     qkv is f32 or f64, or bf16 on a GPU (the product written in bf16 under Precision::BF16):
//     the rotation is then computed in f32 and rounded to bf16.
//     In place (with rope_in_place set: run.rope_in_place, true by default in a run's config):
//     when qkv is moved in and nothing else holds its storage (the product's output, which only
//     RoPE reads), the rotation is written over it and v stays where it lies, with no copy; the
//     output shares qkv's storage. In backward likewise over the gradient, when the engine holds
//     it alone. Same bits either way.
#pragma once
#include <cstdint>

#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor rope(const Tensor& x, double theta = 10000.0, int64_t position_offset = 0);
Tensor rope_qkv(Tensor qkv, int64_t n_head, double theta = 10000.0,
                int64_t position_offset = 0);

// rope_qkv rotates a qkv (or a gradient) it holds alone in place; set once from the config
// (run.rope_in_place).
extern bool rope_in_place;
// rope_qkv's rotations written in place (forward and backward) since the process started (tests).
int64_t rope_rotations_in_place();

// Sets rope_in_place for a scope (tests, benchmarks).
class RopeInPlaceGuard : ScopedValue<bool> {
 public:
  explicit RopeInPlaceGuard(bool on) : ScopedValue(rope_in_place, on) {}
};

// out = x rotated by +angle (forward) or -angle (backward, applied to the gradient).
using RopeFn = void (*)(const Tensor& x, double theta, int64_t position_offset, Tensor& out);
extern OpKernels<RopeFn, RopeFn> rope_kernels;
// out (B, T, 3C) = qkv's q and k parts rotated by +angle (forward) or -angle (backward, applied
// to the gradient), its v part copied; out may be qkv itself (then v is left as it is).
using RopeQkvFn = void (*)(const Tensor& qkv, int64_t n_head, double theta,
                           int64_t position_offset, Tensor& out);
extern OpKernels<RopeQkvFn, RopeQkvFn> rope_qkv_kernels;

}  // namespace sinklab::ops
