// Reverse-mode backward pass.
//
// Gradient contract:
//  - backward(root) needs a one-element root unless grad_output is given (same shape as root).
//  - Leaves (tensors with requires_grad and no grad_fn) accumulate: leaf.grad += dL/dleaf. If
//    leaf.grad() is already defined it is added to in place (so a grad can be a view into a flat
//    gradient buffer); otherwise a new contiguous tensor is set. Zeroing is the caller's job
//    (optimizer zero_grad). An op may add its part into a leaf's defined, contiguous gradient
//    buffer itself and return no gradient for it (linear's weight: its product accumulates in
//    place); the leaf is still ready only after its last edge.
//  - Non-leaf gradients are not kept. A tensor used several times receives the sum.
//  - The graph is released after backward: calling backward twice through it is an error.
//  - Backward runs with grad mode off (no double backward).
#pragma once
#include <functional>
#include <map>
#include <string>

#include "core/tensor.h"

namespace sinklab::autograd {

void backward(const Tensor& root, const Tensor& grad_output = Tensor());

// Called by backward with each leaf whose gradient is final for this backward: every graph edge
// to it has been processed (a leaf used twice, like a tied embedding, is ready after its last
// use; a leaf no gradient reaches is ready when its edges are skipped). In a fixed order for a
// given graph. Data parallelism uses it to start reducing a bucket of gradients while backward
// goes on. One hook at a time; an empty function removes it.
using LeafReadyHook = std::function<void(const Tensor& leaf)>;
void set_leaf_ready_hook(LeafReadyHook hook);

// Op profiling, off by default; the trainer sets it from run.profile. When on, backward
// synchronises the device around every node and sums the time of each op's backward (and its
// gradient accumulation) by op name, in ms; and every record() synchronises the device and
// charges the time since the previous record() (or restart_forward_profile()) to its op, so the
// forward's time is summed by op name too. Slower; for finding where a step's time goes. Call
// restart_forward_profile() where a forward begins.
void set_op_profiling(bool on);
bool op_profiling();
const std::map<std::string, double>& backward_profile();
void restart_forward_profile();
const std::map<std::string, double>& forward_profile();

// Whether a graph node keeps its inputs' data until its backward (true, the default), or, of an
// input that is not a leaf, only what the engine needs: its node, shape and requires_grad
// (Tensor::without_data). The backward closure keeps what it reads either way; with false, an
// intermediate no backward reads is freed as soon as the forward drops it (the logits under the
// fused cross-entropy: 3.3 GB of bf16 at GPT-2's B=32, T=1024). The same values and the same
// bits; only memory lifetimes change. run.release_forward_inputs sets it.
void set_keep_inputs(bool keep);
bool keep_inputs();
// Sets keep_inputs for a scope (tests), then restores what it was.
class KeepInputsGuard {
 public:
  explicit KeepInputsGuard(bool keep) : before_(keep_inputs()) { set_keep_inputs(keep); }
  ~KeepInputsGuard() { set_keep_inputs(before_); }
  KeepInputsGuard(const KeepInputsGuard&) = delete;
  KeepInputsGuard& operator=(const KeepInputsGuard&) = delete;

 private:
  bool before_;
};

}  // namespace sinklab::autograd
