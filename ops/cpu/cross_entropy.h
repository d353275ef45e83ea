// CPU reference kernels for fused softmax cross-entropy (see ops/cross_entropy.h).
// logits (N, V) and targets (N) contiguous; row sums in double; the loss is summed over rows in
// row order (deterministic for any thread count).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sinklab::cpu {

// Checks every target (ValueError naming the value, its row and V), then writes lse (N) and
// loss () = mean over counted rows of lse_r - logits[r, target_r] (0 when no row counts).
// With grad_logits: also the gradient for g = 1 (the backward's values with a grad_loss of 1).
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                           Tensor& lse, Tensor& loss, Tensor* grad_logits);
// grad_logits (N, V) = (softmax - onehot) * grad_loss / count on counted rows, 0 elsewhere; or,
// precomputed, grad_logits *= grad_loss in place (nothing where grad_loss is 1).
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                            const Tensor& lse, const Tensor& grad_loss, Tensor& grad_logits,
                            bool precomputed);

}  // namespace sinklab::cpu
