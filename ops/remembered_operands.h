// Operand copies made in passes that were running anyway. tensor_core_operand (ops/matmul.h)
// rounds an f32 gradient to bf16 before the products read it: a pass of its own over the tensor.
// Where the kernel that writes the gradient can write its rounded copy too (a norm's backward
// writing the residual stream's folded gradient, ops/add_norm.h), it remembers the pair here, and
// tensor_core_operand takes the copy instead of rounding again: the same bits, one pass fewer.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sinklab::ops {

// A bf16 copy of an f32 tensor, written by the kernel that wrote the tensor itself (a norm's
// backward writes the residual stream's folded gradient and its rounded copy in one pass: the
// gradient the next products read). tensor_core_operand of that tensor (any contiguous view of
// all of it) then takes the copy instead of rounding again: the same bits, one pass fewer. Only
// for a tensor nothing writes afterwards (a freshly made gradient). An entry is taken once; the
// oldest are dropped past a few, and an entry whose tensor is gone is dropped (with its copy) at
// the next call here or from tensor_core_operand.
void remember_operand(const Tensor& t, const Tensor& rounded);
// The remembered copy of t, or an undefined tensor; the entry is forgotten either way on a match.
Tensor take_remembered_operand(const Tensor& t);
// Drops every entry (with its copy): a CUDA graph's recording (train/step_graph.h) starts
// and ends with none, so that no copy made outside it is freed inside it, nor one made inside
// it held after.
void forget_remembered_operands();
int64_t remembered_operands_taken();  // copies taken since the process started (for tests)
int64_t remembered_operands_held();   // entries whose tensor is alive (for tests)

}  // namespace sinklab::ops
