#include "train/data/bpe_merge.h"

#include <queue>

namespace sinklab::train {

bool MergeTable::add(int32_t left, int32_t right, MergeRule rule) {
  return rules_.emplace(key(left, right), rule).second;
}

void bpe_merge(std::vector<int32_t>& symbols, const MergeTable& table) {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  // Symbols as a doubly linked list over their first position; a merged pair keeps the left one.
  std::vector<int32_t> next(n), prev(n);
  for (int32_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const int32_t a = symbols[pos], b = symbols[next[pos]];
    if (const MergeRule* rule = table.find(a, b)) queue.push({rule->rank, pos, a, b});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  std::vector<bool> gone(n, false);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    // Stale when either side has been merged away or changed since the pair was queued.
    if (gone[c.pos] || next[c.pos] < 0 || symbols[c.pos] != c.left ||
        symbols[next[c.pos]] != c.right)
      continue;
    const int32_t right = next[c.pos];
    symbols[c.pos] = table.find(c.left, c.right)->result;
    gone[right] = true;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
  int32_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (!gone[i]) symbols[w++] = symbols[i];
  symbols.resize(w);
}

}  // namespace sinklab::train
