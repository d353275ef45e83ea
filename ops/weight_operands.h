// The weights' bf16 operands of one forward, rounded in one pass over the flat parameter buffer.
// tensor_core_operand (ops/matmul.h) rounds each f32 weight to bf16 before a product reads it:
// about 100 launches a GPT-2 forward, each a short pass over one weight. With
// flat_weight_operands set (run.flat_weight_operands), the model opens a WeightOperandScope over
// its flat parameter buffer at the forward's start: one launch rounds the whole buffer, and
// tensor_core_operand of a contiguous view inside it (a weight, LLaMA's packed q/k/v weight, the
// tied token embedding read as the output head) that starts a multiple of 256 bytes into the
// copy is the same view of that copy (a weight elsewhere is rounded alone). The same bits
// (round-to-nearest-even either way). Nothing writes the parameters during a forward, and
// the copy lives only as long as the scope and the views taken from it (the backward's saved
// operands), so it cannot go stale.
#pragma once
#include <cstdint>

#include "core/scoped_value.h"
#include "core/tensor.h"

namespace sinklab::ops {

// Whether GPT's forward opens a WeightOperandScope (read at each forward; the trainer sets it
// once from the config). On by default since the twentieth session: 0.1 to 0.7% faster on an
// H100 (docs/PERFORMANCE.md).
extern bool flat_weight_operands;

class FlatWeightOperandsGuard : ScopedValue<bool> {
 public:
  explicit FlatWeightOperandsGuard(bool on) : ScopedValue(flat_weight_operands, on) {}
};

// While alive, weight_operand_view serves views of flat (contiguous f32) from its bf16 copy.
// Does nothing (no copy) unless `active`: the model passes flat_weight_operands and whether
// products round flat (rounds_to_operand: f32 on a GPU under bf16 precision); tests pass true.
// Scopes over different buffers may be open at once (compare's variants, each its own buffer).
class WeightOperandScope {
 public:
  WeightOperandScope(const Tensor& flat, bool active);
  ~WeightOperandScope();
  WeightOperandScope(const WeightOperandScope&) = delete;
  WeightOperandScope& operator=(const WeightOperandScope&) = delete;

 private:
  int64_t id_ = 0;  // its entry among the open scopes; 0 when inactive
};

// The bf16 view of t's elements in an open scope's copy, when t is contiguous f32, lies wholly
// inside that scope's buffer and starts a multiple of 128 elements (256 bytes of the copy, the
// alignment cuBLASLt's plans take) from the buffer's start; undefined otherwise
// (tensor_core_operand then rounds t alone, as without a scope).
Tensor weight_operand_view(const Tensor& t);
int64_t weight_operand_views_taken();  // since the process started (for tests)
int64_t weight_operand_scopes_open();  // (for tests)

}  // namespace sinklab::ops
