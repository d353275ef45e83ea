// Byte-pair merging of one pre-token, shared by every BPE tokenizer (sinklab's own, GPT-2's,
// a Hugging Face tokenizer.json's): the merge table maps an adjacent (left, right) id pair to its
// rank and the id it becomes; the lowest rank present merges first, leftmost first, until no
// adjacent pair has a rank. This is Hugging Face's BPE model (a priority queue of positions,
// O(n log n)); where every merge's result outranks the merges that made its parts (sinklab's
// merges and GPT-2's vocab.bpe), it equals merging all occurrences of the best pair at a time
// (OpenAI's encoder.py).
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace sinklab::train {

struct MergeRule {
  int32_t rank;    // lower merges first
  int32_t result;  // the id the pair becomes
};

class MergeTable {
 public:
  // Returns false when (left, right) is already in the table (the first rule stays).
  bool add(int32_t left, int32_t right, MergeRule rule);
  const MergeRule* find(int32_t left, int32_t right) const {
    const auto it = rules_.find(key(left, right));
    return it == rules_.end() ? nullptr : &it->second;
  }
  size_t size() const { return rules_.size(); }
  void reserve(size_t n) { rules_.reserve(n); }

 private:
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::unordered_map<uint64_t, MergeRule> rules_;
};

// Merges `symbols` (ids, in order) in place.
void bpe_merge(std::vector<int32_t>& symbols, const MergeTable& table);

}  // namespace sinklab::train
