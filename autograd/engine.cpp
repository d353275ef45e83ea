#include "autograd/engine.h"

#include <atomic>
#include <chrono>
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/storage.h"
#include "core/tensor_math.h"

namespace sinklab::autograd {

namespace {
std::atomic<bool> g_op_profiling{false};  // set_op_profiling
std::atomic<bool> g_keep_inputs{true};    // set_keep_inputs
std::map<std::string, double> g_profile;  // op name -> ms of backward (op profiling)
std::map<std::string, double> g_forward_profile;  // op name -> ms of forward (op profiling)
std::chrono::steady_clock::time_point g_forward_mark;  // the previous record() or restart
LeafReadyHook g_leaf_ready;                           // set_leaf_ready_hook

// The node whose backward is running, and the engine's gradient slots (pending_grad).
struct RunningNode {
  const Node* node = nullptr;
  std::unordered_map<Node*, Tensor>* grads = nullptr;
};
thread_local RunningNode g_running;

// Now, after the device of t has finished its queued work.
std::chrono::steady_clock::time_point synchronized_now(const Tensor& t) {
  if (t.device().is_cuda() && device_memory_hooks().synchronize)
    device_memory_hooks().synchronize(t.device().index);
  return std::chrono::steady_clock::now();
}
}  // namespace

namespace {
// The slot of the running node's input `input`, or null.
Tensor* pending_slot(size_t input) {
  if (!g_running.node || input >= g_running.node->inputs().size()) return nullptr;
  const Tensor& in = g_running.node->inputs()[input];
  if (!in.defined() || !in.requires_grad() || in.is_leaf()) return nullptr;
  auto found = g_running.grads->find(in.grad_fn().get());
  return found == g_running.grads->end() ? nullptr : &found->second;
}
}  // namespace

Tensor pending_grad(size_t input) {
  const Tensor* slot = pending_slot(input);
  return slot ? *slot : Tensor();
}

void take_pending_grad(size_t input) {
  if (!pending_slot(input)) return;
  g_running.grads->erase(g_running.node->inputs()[input].grad_fn().get());
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& output, const char* name, const std::vector<Tensor>& inputs,
            BackwardFn backward) {
  if (!needs_grad(inputs)) return;
  if (op_profiling()) {
    const auto now = synchronized_now(output);
    g_forward_profile[name] += std::chrono::duration<double, std::milli>(now - g_forward_mark).count();
    g_forward_mark = now;
  }
  std::vector<Tensor> kept;  // what the node holds of each input
  kept.reserve(inputs.size());
  const bool whole = keep_inputs();
  for (const Tensor& in : inputs)  // a leaf whole: the engine adds into its .grad
    kept.push_back(whole || !in.defined() || in.is_leaf() ? in : in.without_data());
  output.set_grad_fn(std::make_shared<Node>(name, std::move(kept), std::move(backward)));
  output.autograd_meta().requires_grad = true;
}

namespace {

// Post-order DFS from the root's node: every node appears after all nodes that consume it.
// Owning pointers: releasing a node's inputs must not free nodes still to be visited.
std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
  seen.insert(root.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs().size()) {
      const Tensor& in = node->inputs()[next++];
      std::shared_ptr<Node> child = in.defined() ? in.grad_fn() : nullptr;
      if (child && seen.insert(child.get()).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  return order;  // children before parents; process in reverse
}

// Sums gradients arriving at a non-leaf. A fresh tensor is made for the sum because a backward
// closure may still hold the first gradient.
void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
    return;
  }
  slot = sum_of(slot, g);
}

void accumulate_leaf(const Tensor& leaf_handle, const Tensor& g) {
  Tensor leaf = leaf_handle;
  Tensor existing = leaf.grad();
  if (existing.defined()) {
    add_into(existing, g);
  } else {
    leaf.set_grad(g.copy_contiguous());
  }
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad_output) {
  SINKLAB_CHECK(root.defined(), ValueError, "backward on an undefined tensor", "");
  SINKLAB_CHECK(root.requires_grad(), ValueError,
                "backward on " << root.str() << " which does not require grad",
                "no input of the computation had requires_grad set, or it ran under NoGradGuard");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    SINKLAB_CHECK(root.numel() == 1, ShapeError,
                  "backward on non-scalar " << root.str() << " without a grad_output",
                  "reduce to a scalar (sum/mean) or pass grad_output");
    seed = Tensor::full(root.shape(), 1.0, root.dtype(), root.device());
  }
  SINKLAB_CHECK(seed.shape() == root.shape(), ShapeError,
                "backward: grad_output " << seed.str() << " for root " << root.str(),
                "grad_output must have the root's shape");
  NoGradGuard no_grad;
  if (root.is_leaf()) {
    accumulate_leaf(root, seed);
    return;
  }
  std::shared_ptr<Node> root_node = root.grad_fn();
  SINKLAB_CHECK(!root_node->released(), ValueError,
                "backward through op '" << root_node->name() << "' a second time",
                "build the graph again (run the forward pass) before another backward");
  std::vector<std::shared_ptr<Node>> order = topological_order(root_node);
  // With a leaf-ready hook: graph edges still to process per leaf that requires grad.
  std::unordered_map<const TensorImpl*, int> pending;
  auto is_tracked_leaf = [](const Tensor& in) {
    return in.defined() && in.requires_grad() && in.is_leaf();
  };
  if (g_leaf_ready)
    for (const auto& node : order)
      for (const Tensor& in : node->inputs())
        if (is_tracked_leaf(in)) ++pending[in.impl_ptr().get()];
  // After a node is done with (processed or skipped): its leaf edges count down.
  auto leaf_edges_done = [&](const Node& node) {
    if (!g_leaf_ready) return;
    for (const Tensor& in : node.inputs())
      if (is_tracked_leaf(in) && --pending[in.impl_ptr().get()] == 0) g_leaf_ready(in);
  };
  std::unordered_map<Node*, Tensor> grads;
  grads[root_node.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = it->get();
    auto found = grads.find(node);
    if (found == grads.end()) {  // no gradient flows here
      leaf_edges_done(*node);
      continue;
    }
    Tensor g = found->second.contiguous_or_self();  // kernels see contiguous grads
    grads.erase(found);
    SINKLAB_CHECK(!node->released(), ValueError,
                  "backward through op '" << node->name() << "' a second time",
                  "build the graph again before another backward");
    const bool profiling = op_profiling();
    const auto started = profiling ? synchronized_now(g) : std::chrono::steady_clock::now();
    g_running = {node, &grads};
    std::vector<Tensor> input_grads;
    try {
      input_grads = node->apply(g);
    } catch (...) {
      g_running = {};
      throw;
    }
    g_running = {};
    const auto& inputs = node->inputs();
    SINKLAB_CHECK(input_grads.size() == inputs.size(), InternalError,
                  "op '" << node->name() << "' returned " << input_grads.size()
                         << " gradients for " << inputs.size() << " inputs",
                  "fix the op's backward");
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& in = inputs[i];
      const Tensor& gi = input_grads[i];
      if (!gi.defined() || !in.defined() || !in.requires_grad()) continue;
      SINKLAB_CHECK(gi.shape() == in.shape(), InternalError,
                    "op '" << node->name() << "' gave grad " << gi.str() << " for input " << i
                           << " " << in.str(),
                    "fix the op's backward");
      if (in.is_leaf())
        accumulate_leaf(in, gi);
      else
        accumulate(grads[in.grad_fn().get()], gi);
    }
    leaf_edges_done(*node);
    node->release();
    if (profiling)
      g_profile[node->name()] +=
          std::chrono::duration<double, std::milli>(synchronized_now(g) - started).count();
  }
}

void set_op_profiling(bool on) { g_op_profiling.store(on, std::memory_order_relaxed); }

bool op_profiling() { return g_op_profiling.load(std::memory_order_relaxed); }

void set_keep_inputs(bool keep) { g_keep_inputs.store(keep, std::memory_order_relaxed); }

bool keep_inputs() { return g_keep_inputs.load(std::memory_order_relaxed); }

const std::map<std::string, double>& backward_profile() { return g_profile; }

void set_leaf_ready_hook(LeafReadyHook hook) { g_leaf_ready = std::move(hook); }

void restart_forward_profile() { g_forward_mark = std::chrono::steady_clock::now(); }

const std::map<std::string, double>& forward_profile() { return g_forward_profile; }

}  // namespace sinklab::autograd
