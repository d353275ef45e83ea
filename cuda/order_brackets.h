// Sampled brackets for exact order statistics (cuda/statistics.cu's abs_order_statistics on
// large tensors): the host/device logic, kept free of CUDA so that CPU tests check it against
// nth_element. Keys are the bit patterns of |x| (sign bit cleared), compared as unsigned.
//   1. kBracketSample keys at bracket_sample_index(i, n) are sorted.
//   2. plan_brackets: each requested rank r of n sits near sample position q = r s / n; its key
//      range spans the sorted sample from q - d to q + d, d = 4 sqrt(s p (1 - p)) + 8 with
//      p = r / n (four standard deviations of a sample quantile, plus a margin); ends beyond the
//      sample are open. Overlapping ranges are merged; the result is ascending and disjoint.
//   3. One pass over x counts, per range, the keys below it and inside it, and compacts the keys
//      inside (the candidates).
//   Or, 1-2 replaced where a histogram of every key's top 16 bits placed each rank in its bin
//   (f32 and f64 on devices with 128 KB of shared memory per block): plan_prefix_brackets makes
//   each rank's range its whole bin, which holds it for certain.
//   4. resolve_brackets: when every rank r has below <= r < below + inside in its range and the
//      candidates fit the buffer, r's value is the candidate at place (candidates of lower
//      ranges) + (r - below) in sorted order; otherwise the caller selects on x itself.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/philox.h"  // SINKLAB_HD

namespace sinklab::cuda {

constexpr int kBracketMaxRanks = 8;
constexpr int kBracketSample = 1 << 16;  // keys sampled (with replacement)

template <class K>
struct BracketPlan {
  K lo[kBracketMaxRanks];  // inclusive key ranges, ascending, disjoint; unused ones empty
  K hi[kBracketMaxRanks];
  int count;                        // ranges in use
  int of_rank[kBracketMaxRanks];    // the range of each requested rank
};

// The position of sample i among n elements: a fixed hash (splitmix64's finaliser), so the
// sample does not follow the tensor's layout.
SINKLAB_HD uint64_t bracket_sample_index(uint64_t i, int64_t n) {
  uint64_t z = 0x9e3779b97f4a7c15ull + i;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (z ^ (z >> 31)) % static_cast<uint64_t>(n);
}

// The ranges lo[k]..hi[k] of count ranks, sorted by lo and overlapping ones merged, into plan
// (ascending, disjoint; unused ranges empty), with each rank's range.
template <class K>
SINKLAB_HD void merge_brackets(const K* lo, const K* hi, int count, BracketPlan<K>& plan) {
  int order[kBracketMaxRanks];
  for (int k = 0; k < count; ++k) {
    int j = k;  // insertion sort of the ranks by lo
    while (j > 0 && lo[order[j - 1]] > lo[k]) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
  int used = 0;
  for (int j = 0; j < count; ++j) {
    const int k = order[j];
    if (used > 0 && lo[k] <= plan.hi[used - 1]) {
      if (hi[k] > plan.hi[used - 1]) plan.hi[used - 1] = hi[k];
    } else {
      plan.lo[used] = lo[k];
      plan.hi[used] = hi[k];
      ++used;
    }
    plan.of_rank[k] = used - 1;
  }
  for (int b = used; b < kBracketMaxRanks; ++b) {  // empty: no key is >= all ones and <= 0
    plan.lo[b] = static_cast<K>(~K(0));
    plan.hi[b] = K(0);
  }
  plan.count = used;
}

// The sample positions that bound rank r of n: [a, b], a <= 0 meaning open below (key 0) and
// b >= kBracketSample - 1 open above.
struct SampleSpan {
  double a, b;
};
SINKLAB_HD SampleSpan sample_span(unsigned long long r, int64_t n) {
  const double p = static_cast<double>(r) / static_cast<double>(n);
  const double q = p * kBracketSample;
  const double d = 4.0 * sqrt(kBracketSample * p * (1.0 - p)) + 8.0;
  return {floor(q - d), ceil(q + d)};
}

// sorted (kBracketSample) keys ascending; ranks (count <= kBracketMaxRanks) of n.
template <class K>
SINKLAB_HD void plan_brackets(const K* sorted, const unsigned long long* ranks, int count,
                              int64_t n, BracketPlan<K>& plan) {
  const K top = static_cast<K>(static_cast<K>(~K(0)) >> 1);  // the largest |x| key (a NaN)
  K lo[kBracketMaxRanks], hi[kBracketMaxRanks];
  for (int k = 0; k < count; ++k) {
    const SampleSpan s = sample_span(ranks[k], n);
    lo[k] = s.a <= 0 ? K(0) : sorted[static_cast<int>(s.a)];
    hi[k] = s.b >= kBracketSample - 1 ? top : sorted[static_cast<int>(s.b)];
  }
  merge_brackets(lo, hi, count, plan);
}

// An upper bound of plan_brackets' plan.count for these ranks, known before the sample: spans
// that overlap in sample positions overlap in keys too (the sample is sorted), so they merge
// whatever the keys are. The median pair and the top three ranks of the sink metrics give 2.
inline int sampled_bracket_bound(const unsigned long long* ranks, int count, int64_t n) {
  SampleSpan spans[kBracketMaxRanks];
  for (int k = 0; k < count; ++k) {
    SampleSpan s = sample_span(ranks[k], n);
    if (s.a < 0) s.a = 0;  // open ends as the positions they stand for
    if (s.b > kBracketSample - 1) s.b = kBracketSample - 1;
    int j = k;  // insertion sort by a
    while (j > 0 && spans[j - 1].a > s.a) {
      spans[j] = spans[j - 1];
      --j;
    }
    spans[j] = s;
  }
  int used = 0;
  double hi = 0;
  for (int k = 0; k < count; ++k) {
    if (used > 0 && spans[k].a <= hi) {
      if (spans[k].b > hi) hi = spans[k].b;
    } else {
      ++used;
      hi = spans[k].b;
    }
  }
  return used;
}

// Brackets of whole top-16-bit bins: prefixes[k] is rank k's key with its low_bits low bits
// cleared (from one histogram of every key's top 16 bits, which places each rank in its bin
// exactly), its range [prefix, prefix | (2^low_bits - 1)]. Every rank is then inside its range;
// only an overflow of the candidates asks for the fallback.
template <class K>
SINKLAB_HD void plan_prefix_brackets(const K* prefixes, int count, int low_bits,
                                     BracketPlan<K>& plan) {
  K lo[kBracketMaxRanks], hi[kBracketMaxRanks];
  const K low = low_bits >= static_cast<int>(sizeof(K) * 8) ? static_cast<K>(~K(0))
                                                            : static_cast<K>((K(1) << low_bits) - 1);
  for (int k = 0; k < count; ++k) {
    lo[k] = static_cast<K>(prefixes[k] & static_cast<K>(~low));
    hi[k] = static_cast<K>(lo[k] | low);
  }
  merge_brackets(lo, hi, count, plan);
}

// below, inside (kBracketMaxRanks): the counts of step 3; total: the candidates met (they fit
// when total <= cap). True when every rank is bracketed; place[k] is then rank k's position
// among the sorted candidates.
template <class K>
SINKLAB_HD bool resolve_brackets(const BracketPlan<K>& plan, const unsigned long long* below,
                                 const unsigned long long* inside, unsigned long long total,
                                 const unsigned long long* ranks, int count, int64_t cap,
                                 unsigned long long* place) {
  bool ok = total <= static_cast<unsigned long long>(cap);
  for (int k = 0; k < count; ++k) {
    const int b = plan.of_rank[k];
    const unsigned long long r = ranks[k];
    ok = ok && below[b] <= r && r < below[b] + inside[b];
    unsigned long long lower = 0;  // candidates of the ranges below b
    for (int c = 0; c < b; ++c) lower += inside[c];
    place[k] = ok ? lower + (r - below[b]) : 0;
  }
  return ok;
}

}  // namespace sinklab::cuda
