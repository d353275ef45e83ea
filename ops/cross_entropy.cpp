#include "ops/cross_entropy.h"

#include "autograd/node.h"
#include "ops/cpu/cross_entropy.h"

namespace sinklab::ops {

OpKernels<CrossEntropyForwardFn, CrossEntropyBackwardFn> cross_entropy_kernels{
    "cross_entropy", cpu::cross_entropy_forward, cpu::cross_entropy_backward};
bool fused_cross_entropy = true;

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                     CrossEntropyLogits logits_after) {
  const char* op = "cross_entropy";
  check_float_storage(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_dtype(targets, DType::I32, op, "targets");
  check_same_device(logits, targets, op);
  SINKLAB_CHECK(logits.dim() >= 1 && logits.size(-1) >= 1, ShapeError,
                op << ": logits " << shape_str(logits.shape()) << " must be (..., V) with V >= 1",
                "the last dim of logits is the vocabulary");
  const Shape row_shape(logits.shape().begin(), logits.shape().end() - 1);
  SINKLAB_CHECK(targets.shape() == row_shape, ShapeError,
                op << ": targets " << shape_str(targets.shape()) << " do not match logits "
                   << shape_str(logits.shape()) << ": expected targets "
                   << shape_str(row_shape),
                "targets hold one class index per row of logits: logits (..., V), targets (...)");
  check_contiguous(logits, op, "logits");
  check_contiguous(targets, op, "targets");
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  Tensor logits2 = logits.reshape_view({N, V});  // (N, V)
  Tensor targets1 = targets.reshape_view({N});   // (N)
  // bf16 logits are summed in f32: lse and the loss are f32 then.
  const DType sum_dtype = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor lse = Tensor::empty({N}, sum_dtype, logits.device());  // (N)
  Tensor loss = Tensor::empty({}, sum_dtype, logits.device());  // ()
  // The gradient for g = 1, written by the forward (fused_cross_entropy) into a buffer of its
  // own or over the logits (kOverwritten), or undefined.
  Tensor early_grad;  // (N, V)
  if (fused_cross_entropy && autograd::needs_grad({logits}))
    early_grad = logits_after == CrossEntropyLogits::kOverwritten && !logits.is_leaf()
                     ? logits2
                     : Tensor::empty({N, V}, logits.dtype(), logits.device());
  cross_entropy_kernels.forward(logits.device())(logits2, targets1, ignore_index, lse, loss,
                                                 early_grad.defined() ? &early_grad : nullptr);
  // With the gradient written already the backward only scales it: the node keeps it and not
  // the logits (GPT-2's bf16 logits at B=32, T=1024 are 3.3 GB), which the caller may then free
  // before the backward.
  const bool precomputed = early_grad.defined();
  autograd::record(loss, op, {logits, targets},
                   [logits2 = precomputed ? early_grad : logits2.detach(), targets1, lse,
                    ignore_index, precomputed, shape = logits.shape()](const Tensor& g) {
                     // precomputed: logits2 is the gradient itself, read for its shape only
                     Tensor grad = precomputed ? logits2
                                               : Tensor::empty(logits2.shape(), logits2.dtype(),
                                                               logits2.device());  // (N, V)
                     cross_entropy_kernels.backward(logits2.device())(
                         logits2, targets1, ignore_index, lse, g, grad, precomputed);
                     return std::vector<Tensor>{grad.reshape_view(shape), Tensor()};
                   });
  return loss;
}

}  // namespace sinklab::ops
