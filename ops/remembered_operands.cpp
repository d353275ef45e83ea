#include "ops/remembered_operands.h"

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace sinklab::ops {

namespace {

// remember_operand's entries: the tensor's storage (not kept alive), where its elements start,
// how many, and the bf16 copy (contiguous, t's element count).
struct RememberedOperand {
  std::weak_ptr<Storage> storage;
  int64_t offset = 0, numel = 0;
  Tensor rounded;
};
constexpr size_t kRememberedOperands = 4;  // a backward takes each within a node or two
std::mutex g_remembered_mutex;
std::deque<RememberedOperand> g_remembered;
std::atomic<int64_t> g_remembered_taken{0};

// Drops the entries whose tensor is gone, so that their copies go back to the pool at once (the
// copy of block 0's first norm, whose gradient reaches the embeddings and no product, would
// otherwise be held through the next forward). Called with the mutex held.
void drop_orphans() {
  std::erase_if(g_remembered, [](const RememberedOperand& e) { return e.storage.expired(); });
}

}  // namespace

void remember_operand(const Tensor& t, const Tensor& rounded) {
  SINKLAB_CHECK(t.defined() && rounded.defined() && t.is_contiguous() &&
                    rounded.is_contiguous() && rounded.numel() == t.numel() &&
                    rounded.device() == t.device(),
                ValueError,
                "remember_operand: " << t.str() << " and its copy " << rounded.str(),
                "pass a contiguous tensor and a contiguous copy of its elements on its device");
  std::lock_guard<std::mutex> lock(g_remembered_mutex);
  drop_orphans();
  g_remembered.push_back({t.impl_ptr()->storage, t.impl_ptr()->offset, t.numel(), rounded});
  while (g_remembered.size() > kRememberedOperands) g_remembered.pop_front();
}

Tensor take_remembered_operand(const Tensor& t) {
  std::lock_guard<std::mutex> lock(g_remembered_mutex);
  drop_orphans();
  if (!t.defined() || !t.is_contiguous()) return Tensor();
  for (auto it = g_remembered.begin(); it != g_remembered.end(); ++it) {
    const std::shared_ptr<Storage> storage = it->storage.lock();
    if (storage == nullptr || storage != t.impl_ptr()->storage ||
        it->offset != t.impl_ptr()->offset || it->numel != t.numel())
      continue;
    Tensor copy = it->rounded.reshape_view(t.shape());
    g_remembered.erase(it);
    g_remembered_taken.fetch_add(1, std::memory_order_relaxed);
    return copy;
  }
  return Tensor();
}

void forget_remembered_operands() {
  std::lock_guard<std::mutex> lock(g_remembered_mutex);
  g_remembered.clear();
}

int64_t remembered_operands_held() {
  std::lock_guard<std::mutex> lock(g_remembered_mutex);
  drop_orphans();
  return static_cast<int64_t>(g_remembered.size());
}

int64_t remembered_operands_taken() {
  return g_remembered_taken.load(std::memory_order_relaxed);
}

}  // namespace sinklab::ops
