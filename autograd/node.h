// A node of the dynamic graph: the op that produced one tensor, its inputs, and its backward.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sinklab::autograd {

// Given d(loss)/d(output), returns d(loss)/d(input_i) for each input (undefined when not needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

class Node {
 public:
  Node(std::string name, std::vector<Tensor> inputs, BackwardFn backward)
      : name_(std::move(name)), inputs_(std::move(inputs)), backward_(std::move(backward)) {}

  const std::string& name() const { return name_; }
  const std::vector<Tensor>& inputs() const { return inputs_; }
  std::vector<Tensor> apply(const Tensor& grad_output) const { return backward_(grad_output); }
  // Drops saved tensors after backward so their memory is freed.
  void release() {
    inputs_.clear();
    backward_ = nullptr;
  }
  bool released() const { return !backward_; }

 private:
  std::string name_;
  std::vector<Tensor> inputs_;
  BackwardFn backward_;
};

// Makes `output` the result of op `name` applied to `inputs` when grad mode is on and any input
// requires grad. The backward closure must capture saved tensors by value, and must capture the
// output only through output.detach() (a plain capture would make a reference cycle).
void record(Tensor& output, const char* name, const std::vector<Tensor>& inputs, BackwardFn backward);

// True when an op with these inputs must record a graph node.
bool needs_grad(const std::vector<Tensor>& inputs);

// Inside a node's backward: the gradient the engine has gathered so far for the node's input
// `input` from its other consumers (those processed before this node), or an undefined tensor
// (none yet, a leaf, an input without grad, or outside a backward). A backward that adds it into
// its own gradient for that input, in the same pass, then calls take_pending_grad(input): the
// engine forgets it, and stores the backward's gradient in its place instead of adding the two
// (the norms fold the residual stream's gradient this way, one pass over it fewer).
Tensor pending_grad(size_t input);
void take_pending_grad(size_t input);

}  // namespace sinklab::autograd
