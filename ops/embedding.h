// Table lookup: embedding(ids, table): ids i32 of any shape (...), table (V, C) -> (..., C),
// out[..., :] = table[ids[...], :]. Every id must lie in [0, V) (ValueError naming the first bad
// one). The table gets a gradient (summed over the tokens that read each row); ids get none.
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor embedding(const Tensor& ids, const Tensor& table);

// Forward validates the ids (the values are only known to the kernel's device) and gathers rows.
using EmbeddingForwardFn = void (*)(const Tensor& ids, const Tensor& table, Tensor& out);
// grad_table (V, C) = scatter-sum of grad (..., C) by id, deterministic (no atomics).
using EmbeddingBackwardFn = void (*)(const Tensor& grad, const Tensor& ids, Tensor& grad_table);
extern OpKernels<EmbeddingForwardFn, EmbeddingBackwardFn> embedding_kernels;

}  // namespace sinklab::ops
