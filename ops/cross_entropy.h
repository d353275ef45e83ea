// Softmax cross-entropy over the last dim, fused with its backward.
//   cross_entropy(logits, targets, ignore_index): logits (..., V) f32/f64 (or bf16 on a GPU:
//     the logits of linear(..., LinearOutput::kOperandDType)), targets i32 (...)
//     -> scalar () = mean over rows with target != ignore_index of lse_r - logits[r, target_r],
//     lse_r = log sum_v exp(logits[r, v]) (max-subtracted, in double).
//   Backward: dlogits[r, v] = (exp(logits[r, v] - lse_r) - [v == target_r]) * g / count for
//     counted rows, 0 for ignored rows. Only lse (one value per row) is saved: the probabilities
//     are recomputed, never stored. No counted row -> loss 0 and a zero gradient.
//   bf16 logits are summed in f32; their loss is f32 and their gradient bf16 (what the logits'
//   linear reads without a rounding pass).
//   A target outside [0, V) that is not ignore_index is a ValueError (raised by the kernel, which
//   is the one that reads the targets).
//   With fused_cross_entropy set (run.fused_cross_entropy) and the logits requiring grad, the
//   forward also writes the gradient for g = 1 in its pass over the logits (on a GPU: each row
//   read once from memory and staged in shared memory where it fits, else read again from L2),
//   and the backward only scales it by g (a pass only when g != 1). On the CPU the values are
//   the unfused ones for g = 1; on a GPU the fused kernels' (max, sum) trees are others (512 or
//   1024 threads against 256), so lse, the loss and the gradient may differ from the unfused
//   ones in the last bits; for g != 1 the gradient is rounded once more. Off: the backward recomputes the softmax from the logits (one more read
//   of them).
#pragma once
#include <cstdint>

#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

// What becomes of the logits' storage. kOverwritten: where the forward writes the gradient
// (fused_cross_entropy, logits requiring grad), it writes it over the logits themselves, which
// then hold the gradient for g = 1 and no longer the logits: the caller must not read them (or
// any view of them) after the call, and no other op may have them as an input. That saves one
// (N, V) buffer at the loss's forward (GPT-2's bf16 logits at B=32, T=1024: 3.3 GB), where the
// training step's memory peaks. Where no gradient is written, and where the logits are a leaf
// (a caller's own tensor, not an op's output), the logits are kept as they are.
enum class CrossEntropyLogits { kKept, kOverwritten };

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -1,
                     CrossEntropyLogits logits_after = CrossEntropyLogits::kKept);

// logits viewed as (N, V), targets as (N); lse (N) in f64 for f64 logits, f32 otherwise.
// Forward writes lse and loss (scalar, f64 for f64 logits, f32 otherwise), and, when grad_logits
// (N, V) is given, the gradient for g = 1; grad_logits may be the logits themselves
// (CrossEntropyLogits::kOverwritten): each row is read whole before its gradient is written.
using CrossEntropyForwardFn = void (*)(const Tensor& logits, const Tensor& targets,
                                       int32_t ignore_index, Tensor& lse, Tensor& loss,
                                       Tensor* grad_logits);
// grad_loss: scalar, the loss's dtype; grad_logits (N, V), the logits' dtype. precomputed: it
// already holds the forward's gradient for g = 1, to be scaled by g in place (nothing is done
// where g is 1); the logits are then not read beyond their shape and dtype, so grad_logits
// stands in for them and the op does not keep the forward's logits for its backward.
using CrossEntropyBackwardFn = void (*)(const Tensor& logits, const Tensor& targets,
                                        int32_t ignore_index, const Tensor& lse,
                                        const Tensor& grad_loss, Tensor& grad_logits,
                                        bool precomputed);
extern OpKernels<CrossEntropyForwardFn, CrossEntropyBackwardFn> cross_entropy_kernels;

// Whether the forward writes the gradient (see above). Read at each call; the trainer sets it
// once from the config (run.fused_cross_entropy).
extern bool fused_cross_entropy;

// Sets fused_cross_entropy for a scope (tests, benchmarks).
class FusedCrossEntropyGuard : ScopedValue<bool> {
 public:
  explicit FusedCrossEntropyGuard(bool on) : ScopedValue(fused_cross_entropy, on) {}
};

}  // namespace sinklab::ops
