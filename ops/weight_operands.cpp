#include "ops/weight_operands.h"

#include <atomic>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "ops/matmul.h"

namespace sinklab::ops {

bool flat_weight_operands = true;

namespace {

// An open scope: its buffer's storage (kept alive by the scope's caller, not here), where the
// buffer's elements start in it and how many, and their bf16 copy (contiguous, numel).
struct OpenScope {
  int64_t id;
  std::weak_ptr<Storage> storage;
  int64_t offset = 0, numel = 0;
  Tensor rounded;
};
std::mutex g_scopes_mutex;
std::vector<OpenScope> g_scopes;
int64_t g_next_id = 1;
std::atomic<int64_t> g_views_taken{0};
constexpr int64_t kAlignedElements = 128;  // 256 bytes of bf16

}  // namespace

WeightOperandScope::WeightOperandScope(const Tensor& flat, bool active) {
  if (!active) return;
  SINKLAB_CHECK(flat.defined() && flat.is_contiguous() && flat.dtype() == DType::F32,
                ValueError, "WeightOperandScope: " << (flat.defined() ? flat.str() : "undefined"),
                "pass the flat f32 parameter buffer (contiguous)");
  Tensor rounded = Tensor::empty({flat.numel()}, DType::BF16, flat.device());  // (numel) bf16
  bf16_round_kernels.forward(flat.device())(flat, rounded);
  std::lock_guard<std::mutex> lock(g_scopes_mutex);
  id_ = g_next_id++;
  g_scopes.push_back({id_, flat.storage(), flat.offset(), flat.numel(), rounded});
}

WeightOperandScope::~WeightOperandScope() {
  if (id_ == 0) return;
  std::lock_guard<std::mutex> lock(g_scopes_mutex);
  std::erase_if(g_scopes, [this](const OpenScope& s) { return s.id == id_; });
}

Tensor weight_operand_view(const Tensor& t) {
  if (!t.defined() || !t.is_contiguous() || t.dtype() != DType::F32) return Tensor();
  std::lock_guard<std::mutex> lock(g_scopes_mutex);
  for (const OpenScope& s : g_scopes) {
    // Inside the buffer, and a multiple of 256 bytes into the copy (which starts 256-byte
    // aligned, as every pool allocation): cuBLASLt's plans take only such operands, and a
    // weight that lies elsewhere is rounded alone, into a fresh allocation, as without a scope
    // (GPT-2's and LLaMA's weights start at multiples of 128 elements when C is one, unless
    // model.gamma_shared puts a head's 64 gains between them).
    if (s.storage.lock() != t.storage() || t.offset() < s.offset ||
        t.offset() + t.numel() > s.offset + s.numel ||
        (t.offset() - s.offset) % kAlignedElements != 0)
      continue;
    g_views_taken.fetch_add(1, std::memory_order_relaxed);
    return Tensor::view_of(s.rounded.storage(), t.shape(),
                           s.rounded.offset() + (t.offset() - s.offset), DType::BF16);
  }
  return Tensor();
}

int64_t weight_operand_views_taken() { return g_views_taken.load(std::memory_order_relaxed); }

int64_t weight_operand_scopes_open() {
  std::lock_guard<std::mutex> lock(g_scopes_mutex);
  return static_cast<int64_t>(g_scopes.size());
}

}  // namespace sinklab::ops
