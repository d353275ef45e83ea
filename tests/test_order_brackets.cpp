// The sampled-bracket logic of the GPU's exact order statistics (cuda/order_brackets.h), run on
// the CPU: the sample, the ranges of plan_brackets, a brute-force count of the keys below and
// inside each range, and resolve_brackets' places among the candidates, checked against
// nth_element; inputs whose ranges cannot hold the ranks (heavy ties) must ask for the fallback.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "cuda/order_brackets.h"
#include "tests/helpers.h"

using namespace sinklab;
using cuda::BracketPlan;
using cuda::kBracketMaxRanks;
using cuda::kBracketSample;

namespace {

std::vector<uint32_t> keys_f32(const std::vector<double>& v) {
  std::vector<uint32_t> keys(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    std::memcpy(&keys[i], &f, 4);
    keys[i] &= 0x7fffffffu;
  }
  return keys;
}

std::vector<uint16_t> keys_bf16(const std::vector<double>& v) {
  std::vector<uint16_t> keys(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    keys[i] = static_cast<uint16_t>(float_to_bf16(static_cast<float>(v[i])).bits & 0x7fffu);
  return keys;
}

std::vector<uint64_t> keys_f64(const std::vector<double>& v) {
  std::vector<uint64_t> keys(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    std::memcpy(&keys[i], &v[i], 8);
    keys[i] &= 0x7fffffffffffffffull;
  }
  return keys;
}

// Runs the rest of the bracket algorithm on keys for ranks with the given plan; true when it
// bracketed every rank, in which case the values it selects equal nth_element's.
template <class K>
bool plan_selects_exactly(const std::vector<K>& keys, const std::vector<unsigned long long>& ranks,
                          const BracketPlan<K>& plan) {
  const int64_t n = static_cast<int64_t>(keys.size());
  const int count = static_cast<int>(ranks.size());
  REQUIRE(plan.count >= 1);
  REQUIRE(plan.count <= count);
  for (int b = 0; b < plan.count; ++b) {
    REQUIRE(plan.lo[b] <= plan.hi[b]);
    if (b > 0) REQUIRE(plan.hi[b - 1] < plan.lo[b]);  // ascending, disjoint
  }
  unsigned long long below[kBracketMaxRanks] = {}, inside[kBracketMaxRanks] = {}, total = 0;
  std::vector<K> candidates;
  for (K key : keys) {
    bool in_any = false;
    for (int b = 0; b < kBracketMaxRanks; ++b) {
      below[b] += key < plan.lo[b];
      const bool in = key >= plan.lo[b] && key <= plan.hi[b];
      inside[b] += in;
      in_any = in_any || in;
    }
    if (in_any) {
      ++total;
      candidates.push_back(key);
    }
  }
  for (int b = plan.count; b < kBracketMaxRanks; ++b) REQUIRE(inside[b] == 0);  // unused: empty
  const int64_t cap = std::min<int64_t>(n, n / 16 + kBracketSample);
  unsigned long long place[kBracketMaxRanks];
  const bool ok = cuda::resolve_brackets(plan, below, inside, total, ranks.data(), count, cap, place);
  if (!ok) return false;
  std::sort(candidates.begin(), candidates.end());
  std::vector<K> all(keys);
  for (int k = 0; k < count; ++k) {
    std::nth_element(all.begin(), all.begin() + static_cast<int64_t>(ranks[k]), all.end());
    INFO("rank " << ranks[k] << " of " << n);
    REQUIRE(place[k] < candidates.size());
    REQUIRE(candidates[place[k]] == all[ranks[k]]);
  }
  return true;
}

// The sampled brackets (plan_brackets).
template <class K>
bool brackets_select_exactly(const std::vector<K>& keys, const std::vector<unsigned long long>& ranks) {
  const int64_t n = static_cast<int64_t>(keys.size());
  std::vector<K> sorted(kBracketSample);
  for (int i = 0; i < kBracketSample; ++i) sorted[i] = keys[cuda::bracket_sample_index(i, n)];
  std::sort(sorted.begin(), sorted.end());
  BracketPlan<K> plan{};
  cuda::plan_brackets(sorted.data(), ranks.data(), static_cast<int>(ranks.size()), n, plan);
  // The bound the GPU sizes its counters by, before the sample exists.
  REQUIRE(plan.count <= cuda::sampled_bracket_bound(ranks.data(), static_cast<int>(ranks.size()), n));
  return plan_selects_exactly(keys, ranks, plan);
}

// The brackets of whole top-16-bit bins (plan_prefix_brackets), each rank's bin found as the
// GPU's whole-key histogram finds it (here by sorting).
template <class K>
bool prefix_brackets_select_exactly(const std::vector<K>& keys,
                                    const std::vector<unsigned long long>& ranks) {
  std::vector<K> sorted(keys);
  std::sort(sorted.begin(), sorted.end());
  const int low_bits = static_cast<int>(sizeof(K) * 8) - 16;
  std::vector<K> prefixes;
  for (unsigned long long r : ranks)
    prefixes.push_back(static_cast<K>(sorted[r] >> low_bits << low_bits));
  BracketPlan<K> plan{};
  cuda::plan_prefix_brackets(prefixes.data(), static_cast<int>(ranks.size()), low_bits, plan);
  for (size_t k = 0; k < ranks.size(); ++k) {  // each range is the rank's whole bin
    REQUIRE(plan.lo[plan.of_rank[k]] == prefixes[k]);
    REQUIRE(plan.hi[plan.of_rank[k]] == static_cast<K>(prefixes[k] | ((K(1) << low_bits) - 1)));
  }
  return plan_selects_exactly(keys, ranks, plan);
}

std::vector<unsigned long long> spread_ranks(int64_t n) {
  return {0, 1, static_cast<unsigned long long>(n / 4), static_cast<unsigned long long>(n / 2 - 1),
          static_cast<unsigned long long>(n / 2), static_cast<unsigned long long>(n - 3),
          static_cast<unsigned long long>(n - 2), static_cast<unsigned long long>(n - 1)};
}

}  // namespace

TEST_CASE("order brackets: sampled ranges hold the ranks and select them exactly", "[ops][statistics]") {
  const int64_t n = (int64_t{1} << 20) + 77;
  std::vector<double> v = test::random_tensor({n}, 915, DType::F64, 1.0).to_doubles();
  for (size_t i = 0; i < v.size(); i += 97) v[i] = std::exp(8.0 * v[i]);  // a heavy tail
  const auto ranks = spread_ranks(n);
  REQUIRE(brackets_select_exactly(keys_f32(v), ranks));
  REQUIRE(brackets_select_exactly(keys_f64(v), ranks));
  REQUIRE(brackets_select_exactly(keys_bf16(v), ranks));
  // The median pair alone, as the FFN metric asks: one merged range.
  REQUIRE(brackets_select_exactly(keys_f32(v), {static_cast<unsigned long long>(n / 2 - 1),
                                                static_cast<unsigned long long>(n / 2)}));
  // A layout with structure (one large "super neuron" column in 3072, small values elsewhere):
  // the hashed sample does not follow the layout.
  std::vector<double> u(v.size());
  for (size_t i = 0; i < u.size(); ++i) u[i] = i % 3072 == 7 ? 500.0 + v[i] : 0.01 * v[i];
  REQUIRE(brackets_select_exactly(keys_bf16(u), ranks));
}

TEST_CASE("order brackets: the bound of the sampled ranges before the sample", "[ops][statistics]") {
  // The sink metrics' residual ranks (the median pair and the top three) make two ranges at any
  // size from 2^20; ranks far apart keep theirs; a lone rank one.
  for (int64_t n : {int64_t{1} << 20, (int64_t{1} << 20) + 1, int64_t{25165824}, int64_t{1} << 31}) {
    INFO("n " << n);
    const auto u = [](int64_t r) { return static_cast<unsigned long long>(r); };
    const std::vector<unsigned long long> residual = {u(n / 2 - 1), u(n / 2), u(n - 3), u(n - 2),
                                                      u(n - 1)};
    REQUIRE(cuda::sampled_bracket_bound(residual.data(), 5, n) == 2);
    REQUIRE(cuda::sampled_bracket_bound(residual.data() + 1, 1, n) == 1);
    const std::vector<unsigned long long> spread = spread_ranks(n);
    REQUIRE(cuda::sampled_bracket_bound(spread.data(), 8, n) == 4);  // bottom, n/4, median, top
  }
}

TEST_CASE("order brackets: heavy ties overflow the candidates and ask for the fallback", "[ops][statistics]") {
  const int64_t n = (int64_t{1} << 20) + 5;
  std::vector<double> v = test::random_tensor({n}, 916, DType::F64, 1.0).to_doubles();
  for (size_t i = 0; i < v.size(); ++i)
    if (i % 5 < 3) v[i] = 0;  // 60% zeros: the median's range is [0, 0] with 60% of x inside
  REQUIRE_FALSE(brackets_select_exactly(keys_f32(v), spread_ranks(n)));
  const std::vector<double> same(static_cast<size_t>(n), -2.5);
  REQUIRE_FALSE(brackets_select_exactly(keys_f32(same), spread_ranks(n)));
}

TEST_CASE("order brackets: whole top-16-bit bins hold the ranks and select them exactly",
          "[ops][statistics]") {
  const int64_t n = (int64_t{1} << 20) + 77;
  std::vector<double> v = test::random_tensor({n}, 917, DType::F64, 1.0).to_doubles();
  for (size_t i = 0; i < v.size(); i += 97) v[i] = std::exp(8.0 * v[i]);  // a heavy tail
  const auto ranks = spread_ranks(n);
  REQUIRE(prefix_brackets_select_exactly(keys_f32(v), ranks));
  REQUIRE(prefix_brackets_select_exactly(keys_f64(v), ranks));
  // The median pair shares its bin: one range.
  const std::vector<unsigned long long> pair{static_cast<unsigned long long>(n / 2 - 1),
                                             static_cast<unsigned long long>(n / 2)};
  REQUIRE(prefix_brackets_select_exactly(keys_f32(v), pair));
  // Ties: 60% zeros put the median in the bin of 0 with 60% of x inside, more than a sixteenth:
  // the candidates overflow and the fallback is asked for.
  for (size_t i = 0; i < v.size(); ++i)
    if (i % 5 < 3) v[i] = 0;
  REQUIRE_FALSE(prefix_brackets_select_exactly(keys_f32(v), ranks));
}
