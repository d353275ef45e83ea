// CPU reference kernels for embedding. ids i32 contiguous, N = ids.numel() tokens; table (V, C);
// out and grad (N, C) in flattened form.
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

// Throws ValueError naming the first id outside [0, V), its position in ids, and V, before any
// parallel work; then out[n, :] = table[ids[n], :].
void embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out);
// grad_table[v, :] = sum over tokens n with ids[n] == v of grad[n, :], in token order, in double:
// tokens are grouped by id with a stable counting sort, then table rows run in parallel.
void embedding_backward(const Tensor& grad, const Tensor& ids, Tensor& grad_table);

}  // namespace sinklab::cpu
