#include "ops/add_norm.h"

#include <atomic>

#include "autograd/node.h"
#include "core/precision.h"
#include "ops/matmul.h"
#include "ops/remembered_operands.h"

namespace sinklab::ops {

bool fold_residual_grads = false;
bool bf16_branch_outputs = true;

namespace {
// x is input 0 of every norm's node: record_layernorm's {x, weight, bias}, record_rms's {x, gain}.
constexpr size_t kNormInput = 0;
std::atomic<int64_t> g_folds{0};
std::atomic<int64_t> g_bf16_deltas{0};
}  // namespace

int64_t bf16_deltas_added() { return g_bf16_deltas.load(std::memory_order_relaxed); }

void record_residual_sum(Tensor& sum, const Tensor& x, const Tensor& delta) {
  if (delta.dtype() != x.dtype()) g_bf16_deltas.fetch_add(1, std::memory_order_relaxed);
  autograd::record(sum, "add", {x, delta},
                   [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
}

Tensor foldable_residual_grad(const Tensor& x) {
  if (!fold_residual_grads) return Tensor();
  const Tensor pending = autograd::pending_grad(kNormInput);
  if (!pending.defined() || pending.device() != x.device() || pending.dtype() != x.dtype() ||
      pending.shape() != x.shape() || !pending.is_contiguous() ||
      (x.dtype() != DType::F32 && x.dtype() != DType::F64))
    return Tensor();
  return pending;
}

DType norm_output_dtype(const Tensor& x, NormOutput output) {
  const bool operand = output == NormOutput::kOperandDType && x.device().is_cuda() &&
                       x.dtype() == DType::F32 && cuda_precision() == Precision::BF16;
  return operand ? DType::BF16 : x.dtype();
}

Tensor residual_grad_operand(const Tensor& residual, const Tensor& gx) {
  if (!residual.defined() || !gx.defined() || !rounds_to_operand(gx)) return Tensor();
  return Tensor::empty(gx.shape(), DType::BF16, gx.device());
}

void residual_grad_folded(const Tensor& gx, const Tensor& gx16) {
  autograd::take_pending_grad(kNormInput);
  g_folds.fetch_add(1, std::memory_order_relaxed);
  if (gx16.defined()) remember_operand(gx, gx16);
}

int64_t residual_grads_folded() { return g_folds.load(std::memory_order_relaxed); }

}  // namespace sinklab::ops
