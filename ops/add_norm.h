// The residual stream's add fused with the norm that reads its result (GPT-2's ln_1/ln_2/ln_f,
// LLaMA's RMSNorms): {sum = x + delta, normed = norm(sum)} in one pass over the rows, where the
// GPU kernel reads x and delta once and writes both. The gradients flow as through ops::add and
// then the norm: the sum is recorded as an add node, the normed output as the norm's node on it.
//   add_layernorm(x, delta, weight, bias, eps) and add_rmsnorm(x, delta, weight, eps): x and
//   delta (..., C) of one shape and device, contiguous, and of one dtype, or delta bf16 for an
//   f32 x on a GPU (a branch's product output stored as autocast stores it, with
//   bf16_branch_outputs below: the sum is x + delta widened, in f32); the rest as layernorm /
//   rmsnorm. The gradient reaches delta unchanged, in the sum's dtype (f32): the products that
//   read it round it to bf16 anyway, and the folded norm backward has written that copy.
#pragma once
#include <vector>

#include "autograd/node.h"
#include "core/error.h"
#include "core/tensor.h"

namespace sinklab::ops {

// The dtype a norm stores its output in. kOperandDType: the dtype the products that read it
// multiply in, bf16 for an f32 x on a GPU under Precision::BF16 (GPT-2's layernorms, LLaMA's
// RMSNorms and the head-wise RMSNorm before W_O, whose every output feeds a linear: as autocast's
// cast, without the cast's pass; the gradient then comes back in bf16), x's dtype elsewhere (the
// CPU, f64, Precision::FP32). The norm's statistics and the residual sum keep x's dtype.
// Used by layernorm, add_layernorm, rmsnorm, add_rmsnorm and headwise_rmsnorm (ops/add_norm.cpp).
enum class NormOutput { kInputDType, kOperandDType };
DType norm_output_dtype(const Tensor& x, NormOutput output);

struct AddNorm {
  Tensor sum;     // (..., C) x + delta: the residual stream after the add
  Tensor normed;  // (..., C) norm(sum): the next sublayer's input
};

// delta must match x: one shape, dtype and device, contiguous; or bf16 for an f32 x on a GPU.
inline void check_delta(const Tensor& x, const Tensor& delta, const char* op) {
  check_defined(delta, op, "delta");
  check_same_device(x, delta, op);
  SINKLAB_CHECK(delta.dtype() == x.dtype() || (delta.dtype() == DType::BF16 &&
                                                x.dtype() == DType::F32 && x.device().is_cuda()),
                DTypeError,
                op << ": delta " << delta.str() << " does not match x " << x.str(),
                "pass delta in x's dtype (or bf16 for an f32 x on a GPU)");
  check_contiguous(delta, op, "delta");
  check_shape(delta, x.shape(), op, "delta");
}

// Whether the products whose output is added into the residual stream (attention's output
// projection and the FFN's last product: GPT-2's c_proj, LLaMA's o_proj and down_proj) store it
// in their operand dtype, bf16 under bf16 on a GPU, as PyTorch's autocast does, instead of f32:
// half the bytes written by the product and read by the add + norm that follows, and the sum
// x + bf16(branch) is autocast's. The CPU and Precision::FP32 keep f32 (the switch changes no bit
// there). Set by the trainer from run.bf16_branch_outputs (default true: 0.8 to 1.3% faster on an
// H100); the model reads it at each forward.
extern bool bf16_branch_outputs;
// The adds whose delta was bf16 for an f32 x, since the process started (for tests; counted by
// record_residual_sum).
int64_t bf16_deltas_added();

// Whether a norm's backward adds the residual stream's gradient that reached its input from the
// stream (the next block's add) into its own gradient for x, in the same pass, instead of the
// engine adding the two afterwards (autograd::pending_grad): one pass over (..., C) fewer per
// norm. The same sums, in the same order. Read at each backward; the trainer sets it once from
// the config (run.fold_residual_grads).
extern bool fold_residual_grads;

// The gradient pending for a norm's input x (input 0 of every norm's node) that its backward may
// fold (fold_residual_grads set, on x's device in x's dtype and shape, contiguous), or an
// undefined tensor. A backward that adds it into its gradient for x then calls
// residual_grad_folded() (below): the engine forgets it (autograd::take_pending_grad), and the fold is
// counted (residual_grads_folded(), the folds since the process started, for tests).
Tensor foldable_residual_grad(const Tensor& x);
// Where a fold happens (residual defined), the norm's gradient for x is the residual stream's
// whole gradient there, which the branch's products read next (the add passes it to delta
// unchanged): a bf16 buffer (gx's shape) for the backward kernel to write its rounded copy into
// in the same pass, where the products round (ops::rounds_to_operand); undefined otherwise.
Tensor residual_grad_operand(const Tensor& residual, const Tensor& gx);
// After the fold: the engine forgets the pending gradient, the fold is counted, and gx16 (if
// defined) is remembered as gx's operand copy (ops/remembered_operands.h).
void residual_grad_folded(const Tensor& gx, const Tensor& gx16);
int64_t residual_grads_folded();

// Records sum = x + delta for autograd: the gradient reaches x and delta unchanged. Counts a
// bf16 delta for an f32 x (bf16_deltas_added).
void record_residual_sum(Tensor& sum, const Tensor& x, const Tensor& delta);

}  // namespace sinklab::ops
