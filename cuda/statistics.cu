// CUDA twins of ops/cpu/statistics (see ops/statistics.h), for the sink metrics on the device.
//
// row_statistics: one warp per row (8 rows per block of 256 threads), rows and elements at any
//   strides (a transposed or selected view reads in place); the warp sums the row, then the
//   squared deviations from the mean, the squares and |x| (and takes max |x|), lane-strided,
//   and reduces with xor shuffles: a fixed order, so results are bit-identical across runs.
//   Sums in the tensor's type (f32 / f64; f32 for bf16). Contiguous, aligned rows of up to 256
//   16-byte vectors are held in registers (read once, every load in flight at once).
// abs_order_statistics: an exact radix select over the bit patterns of |x| (sign bit cleared:
//   for non-negative IEEE values the unsigned bit order is the numeric order, NaN above +inf).
//   Small x (and devices without 128 KB of shared memory per block): digits most significant
//   first, 8 bits, then 12 (2 passes for bf16, 3 for f32, 6 for f64);
//   every pass reads x once for all requested ranks together: a histogram kernel counts the next
//   digit of the keys that match each rank's prefix so far (per-block shared histograms flushed
//   with integer atomics: order-independent, so deterministic), then one block per rank scans
//   its histogram to the bin holding the remaining rank and extends the prefix. The first digit
//   (sign, exponent) is shared by most keys, so the first pass gives every lane its own copy of
//   the 256 bins (no two lanes of a warp add to one word); later passes count only the keys
//   under a prefix into one shared copy (matching the prefixes in an unrolled loop: a table
//   indexed at run time sits in local memory and had made each pass over GPT-2 124M's f32
//   residual take 111 us on the H200, against about 30 us to read it). No host sync.
//   From 2^20 elements, where a block may hold 128 KB of shared memory, the first pass counts
//   the top 16 bits of every key in one 2^15-bin histogram instead (the whole-key select below).
//   f32 then needs one more pass: the low 16 bits of the keys under each rank's 16-bit prefix
//   (about 1/128 of an octave of |x|), counted in a 2^16-bin histogram per prefix. f64 compacts
//   the keys under those prefixes and runs the 12-bit passes on them. Elsewhere a sampled
//   bracket runs first: 2^16 keys at hashed
//   positions are sorted, each rank gets a key range around its sample quantile (4 standard
//   deviations wide), and one pass over x counts the keys below each range and compacts the few
//   inside (about 1.6% for a median). When every rank lies in its range and the candidates
//   fit, the radix passes read the candidates instead of x; otherwise they read x as before.
//   Exact either way.
//   bf16 (16-bit keys, 15 without the sign) needs only that histogram: its bins are the values.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/check.h"
#include "cuda/order_brackets.h"
#include "cuda/runtime.h"
#include "cuda/storage_types.cuh"
#include "ops/statistics.h"

namespace sinklab::cuda {

namespace {

constexpr int kMaxRanks = 8;
constexpr int kFirstDigitBits = 8;       // the first pass: sign and the top of the exponent
constexpr int kFirstBins = 1 << kFirstDigitBits;
constexpr int kDigitBits = 12;           // later passes
constexpr int kBins = 1 << kDigitBits;   // histogram bins per rank (the first pass uses 256)
constexpr int kStepThreads = 256;                   // select_step's block
constexpr int kStepBins = kBins / kStepThreads;     // consecutive bins per select_step thread

template <class T>
__device__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The warp's partial sums of one row (lane-strided) reduced with xor shuffles (a fixed order:
// bit-identical across runs), and lane 0 writes o (5): mean, variance, l2 norm, mean |x|, max |x|.
template <class T>
__device__ void write_row_statistics(T* o, T mean, T dev, T sq, T sum_abs, T max_abs, int64_t D) {
  dev = warp_sum(dev);
  sq = warp_sum(sq);
  sum_abs = warp_sum(sum_abs);
  for (int offset = 16; offset > 0; offset >>= 1)
    max_abs = fmax(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
  if (threadIdx.x % 32 == 0) {
    o[0] = mean;
    o[1] = dev / static_cast<T>(D);
    o[2] = sqrt(sq);
    o[3] = sum_abs / static_cast<T>(D);
    o[4] = max_abs;
  }
}

// x (R, D) stored as S, element (r, d) at r * rs + d * cs; out (R, 5) in T = AccumulateIn<S>
// (f32 for bf16). Element by element: any strides.
template <class S, class T = typename AccumulateIn<S>::type>
__global__ void row_statistics_kernel(const S* __restrict__ x, T* __restrict__ out, int64_t R,
                                      int64_t D, int64_t rs, int64_t cs) {
  const int lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= R) return;
  const S* row = x + r * rs;  // (D), cs apart
  T sum = 0;
  for (int64_t d = lane; d < D; d += 32) sum += to_acc(row[d * cs]);
  const T mean = warp_sum(sum) / static_cast<T>(D);
  T dev = 0, sq = 0, sum_abs = 0, max_abs = 0;
  for (int64_t d = lane; d < D; d += 32) {
    const T v = to_acc(row[d * cs]);
    dev += (v - mean) * (v - mean);
    sq += v * v;
    sum_abs += fabs(v);
    max_abs = fmax(max_abs, fabs(v));
  }
  write_row_statistics(out + r * 5, mean, dev, sq, sum_abs, max_abs, D);
}

// A row of `vectors` 16-byte vectors (8 bf16, 4 f32 or 2 f64) held in registers across a warp:
// held[i] is vector i * 32 + lane (unset past the row). Every load is issued before the first
// use, so the row is read from memory once with all of them in flight.
template <int V>
__device__ __forceinline__ void load_held_row(const uint4* __restrict__ row, int vectors,
                                              uint4 (&held)[V]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < V; ++i)
    if (i * 32 + lane < vectors) held[i] = row[i * 32 + lane];
}

// The statistics of a held row of D elements of S into o (5): row_statistics_kernel's formulas
// (the mean first, then the deviations from it), summed from registers in another order (a
// lane's vectors, then the warp); visit(v) sees each element once, in the second sweep (the
// whole-key histogram counts its key there).
template <class S, int V, class T = typename AccumulateIn<S>::type, class Visit>
__device__ __forceinline__ void held_row_statistics(const uint4 (&held)[V], int D, T* o,
                                                    Visit&& visit) {
  constexpr int kPer = 16 / sizeof(S);  // elements per vector
  const int lane = threadIdx.x % 32, vectors = D / kPer;
  T sum = 0;
#pragma unroll
  for (int i = 0; i < V; ++i)
    if (i * 32 + lane < vectors) {
      const S* e = reinterpret_cast<const S*>(&held[i]);
#pragma unroll
      for (int j = 0; j < kPer; ++j) sum += to_acc(e[j]);
    }
  const T mean = warp_sum(sum) / static_cast<T>(D);
  T dev = 0, sq = 0, sum_abs = 0, max_abs = 0;
#pragma unroll
  for (int i = 0; i < V; ++i)
    if (i * 32 + lane < vectors) {
      const S* e = reinterpret_cast<const S*>(&held[i]);
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const T v = to_acc(e[j]);
        dev += (v - mean) * (v - mean);
        sq += v * v;
        sum_abs += fabs(v);
        max_abs = fmax(max_abs, fabs(v));
        visit(e[j]);
      }
    }
  write_row_statistics(o, mean, dev, sq, sum_abs, max_abs, D);
}

// Rows of D contiguous elements, rs apart, 16-byte aligned, D a multiple of the 16-byte vector
// and at most 32 V vectors, held in registers (load_held_row). The element-wise kernel above
// read each row twice, one element a lane at a time: twice the bandwidth floor on the residual
// and the attention output.
template <class S, int V, class T = typename AccumulateIn<S>::type>
__global__ void row_statistics_vec_kernel(const S* __restrict__ x, T* __restrict__ out, int64_t R,
                                          int D, int64_t rs) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= R) return;
  uint4 held[V];  // (V) vectors lane, lane + 32, ... of row r
  load_held_row(reinterpret_cast<const uint4*>(x + r * rs), D / (16 / static_cast<int>(sizeof(S))),
                held);
  held_row_statistics<S>(held, D, out + r * 5, [](S) {});
}

// Vectors per lane (1, 2, 4 or 8) for rows of D contiguous S, rs apart, from p; 0 where the
// rows cannot be held (misaligned, D or rs not a multiple of the vector, more than 256 vectors).
template <class S>
int held_vectors_per_lane(const S* p, int64_t D, int64_t rs) {
  constexpr int64_t kPer = 16 / sizeof(S);
  const int64_t per_lane = (D / kPer + 31) / 32;
  if (D % kPer != 0 || rs % kPer != 0 || reinterpret_cast<uintptr_t>(p) % 16 != 0 || per_lane > 8)
    return 0;
  return per_lane <= 1 ? 1 : per_lane <= 2 ? 2 : per_lane <= 4 ? 4 : 8;
}

// fn(std::integral_constant<int, V>) for V = held (1, 2, 4 or 8: held_vectors_per_lane's).
template <class Fn>
void with_held_vectors(int held, Fn&& fn) {
  switch (held) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default:
      SINKLAB_CHECK(false, ValueError, "row statistics: " << held << " vectors a lane",
                    "an internal error: pass held_vectors_per_lane's result (1, 2, 4 or 8)");
  }
}

void row_statistics_cuda(const Tensor& x, Tensor& out) {
  const ops::RowLayout L = ops::row_layout(x);  // any row and column strides
  const unsigned blocks = blocks_for(L.R, 8);   // a warp per row, 8 per block
  dispatch_storage(x.dtype(), "row_statistics", [&](auto zero) {
    using S = decltype(zero);
    using T = typename AccumulateIn<S>::type;
    const S* px = static_cast<const S*>(x.raw_data());  // (R, D) at L's strides
    const int held = L.col_stride == 1 ? held_vectors_per_lane(px, L.D, L.row_stride) : 0;
    if (held == 0)
      row_statistics_kernel<S><<<blocks, 256, 0, stream()>>>(px, out.data<T>(), L.R, L.D,
                                                             L.row_stride, L.col_stride);
    else
      with_held_vectors(held, [&](auto v) {
        row_statistics_vec_kernel<S, decltype(v)::value><<<blocks, 256, 0, stream()>>>(
            px, out.data<T>(), L.R, static_cast<int>(L.D), L.row_stride);
      });
    SINKLAB_KERNEL_CHECK("row_statistics");
  });
}

// ---------------------------------------------------------------------------------------------
// Radix select.

template <class T> struct KeyOf;
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };
template <> struct KeyOf<__nv_bfloat16> { using type = uint16_t; };

// Per requested rank: the key prefix found so far and the rank left inside it.
template <class K>
struct SelectState {
  K prefix;
  unsigned long long remaining;
};

struct Ranks {
  unsigned long long value[kMaxRanks];
  int count;
};

Ranks ranks_of(const std::vector<int64_t>& ranks) {  // ranks.size() <= kMaxRanks
  Ranks r{};
  r.count = static_cast<int>(ranks.size());
  for (int k = 0; k < r.count; ++k) r.value[k] = static_cast<unsigned long long>(ranks[k]);
  return r;
}

template <class T, class K>
__device__ K abs_key(T v) {
  K bits;
  memcpy(&bits, &v, sizeof(K));
  return bits & ~(K(1) << (sizeof(K) * 8 - 1));
}

// hist: (passes, count, kBins), every region zeroed.
template <class K>
__global__ void select_init(SelectState<K>* state, unsigned long long* hist, int64_t hist_size,
                            Ranks ranks) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < hist_size;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    hist[i] = 0;
  if (blockIdx.x == 0 && threadIdx.x < ranks.count)
    state[threadIdx.x] = {K(0), ranks.value[threadIdx.x]};
}

// fn(key) for the key of every element of x (n), grid-stride. 16-byte loads (8 bf16, 4 f32 or
// 2 f64), two in flight per thread, when x is 16-byte aligned; element by element otherwise and
// for the tail.
template <class T, class K, class Fn>
__device__ __forceinline__ void for_each_key(const T* __restrict__ x, int64_t n, Fn&& fn) {
  using Vec = uint4;  // 16 bytes: 8 bf16, 4 f32 or 2 f64
  constexpr int kPer = 16 / sizeof(T);  // elements per vector
  const int64_t thread = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t done = 0;  // elements covered by the vector loop
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    const Vec* xv = reinterpret_cast<const Vec*>(x);
    const int64_t nv = n / kPer;
    int64_t v = thread;
    for (; v + stride < nv; v += 2 * stride) {
      const Vec a = xv[v], b = xv[v + stride];
      const T* ea = reinterpret_cast<const T*>(&a);
      const T* eb = reinterpret_cast<const T*>(&b);
#pragma unroll
      for (int e = 0; e < kPer; ++e) fn(abs_key<T, K>(ea[e]));
#pragma unroll
      for (int e = 0; e < kPer; ++e) fn(abs_key<T, K>(eb[e]));
    }
    if (v < nv) {
      const Vec a = xv[v];
      const T* ea = reinterpret_cast<const T*>(&a);
#pragma unroll
      for (int e = 0; e < kPer; ++e) fn(abs_key<T, K>(ea[e]));
    }
    done = nv * kPer;
  }
  for (int64_t i = done + thread; i < n; i += stride) fn(abs_key<T, K>(x[i]));
}

// Ranks whose prefixes (above bit `top`) agree share one histogram (all of them in the first
// pass; usually the median pair and the top ranks later): distinct[u] is the u-th distinct
// prefix and slot_of[k] the histogram of rank k. Distinct prefixes select disjoint keys.
// Returns the number of histograms. The histogram and step kernels of a pass agree on it.
template <class K>
__device__ int prefix_slots(const SelectState<K>* state, int count, K high,
                            K (&distinct)[kMaxRanks], int (&slot_of)[kMaxRanks]) {
  int unique = 0;
  for (int k = 0; k < count; ++k) {
    const K p = state[k].prefix & high;
    int u = 0;
    while (u < unique && distinct[u] != p) ++u;
    if (u == unique) distinct[unique++] = p;
    slot_of[k] = u;
  }
  return unique;
}

template <class K>
__device__ K prefix_mask(int top) {
  return top >= static_cast<int>(sizeof(K) * 8) ? K(0) : ~((K(1) << top) - 1);
}

// Where the radix passes read their keys: x itself, or (when use_compact is set on the device by
// bracket_resolve) the compacted candidates of a sampled bracket, the first `met` of them.
template <class T>
struct SelectSource {
  const T* x;                      // (n) the tensor
  int64_t n;
  const T* compact = nullptr;      // (compact_n) candidates (the first *met written), or null
  int64_t compact_n = 0;
  const int* use_compact = nullptr;  // device flag, or null (x)
  const unsigned long long* met = nullptr;  // device count of the candidates (<= compact_n when
                                            // use_compact is set), or null (all compact_n)
  __device__ void pick(const T*& p, int64_t& len) const {
    const bool from_compact = use_compact != nullptr && *use_compact != 0;
    p = from_compact ? compact : x;
    len = from_compact ? (met != nullptr ? static_cast<int64_t>(*met) : compact_n) : n;
  }
};

// The first pass, common to every rank: first_hist (256) counts the top 8 bits of all keys.
// Shared (32, 257) unsigned: one copy of the bins per lane, rows padded by one word so that the
// lanes of a warp adding to one bin hit 32 different banks.
template <class T, class K>
__global__ void select_first_histogram(SelectSource<T> source,
                                       unsigned long long* __restrict__ first_hist) {
  const T* x;
  int64_t n;
  source.pick(x, n);
  constexpr int kRow = kFirstBins + 1;
  __shared__ unsigned int local[32 * kRow];
  for (int i = threadIdx.x; i < 32 * kRow; i += blockDim.x) local[i] = 0;
  __syncthreads();
  const int shift = static_cast<int>(sizeof(K) * 8) - kFirstDigitBits;
  unsigned* mine = local + (threadIdx.x % 32) * kRow;
  for_each_key<T, K>(x, n, [&](K key) { atomicAdd(&mine[static_cast<int>(key >> shift)], 1u); });
  __syncthreads();
  for (int bin = threadIdx.x; bin < kFirstBins; bin += blockDim.x) {
    unsigned c = 0;
    for (int lane = 0; lane < 32; ++lane) c += local[lane * kRow + bin];
    if (c) atomicAdd(&first_hist[bin], static_cast<unsigned long long>(c));
  }
}

// hist (count, kBins), this pass's region: row u counts digit (key >> shift) & (2^width - 1) of
// the keys that match distinct prefix u above bit shift + width. Dynamic shared memory: (count,
// kBins) unsigned.
template <class T, class K>
__global__ void select_histogram(SelectSource<T> source,
                                 const SelectState<K>* __restrict__ state,
                                 unsigned long long* __restrict__ hist, int count, int shift,
                                 int width) {
  extern __shared__ unsigned int local[];  // (unique, kBins) per-block counts
  const T* x;
  int64_t n;
  source.pick(x, n);
  const K high = prefix_mask<K>(shift + width);
  const K digit_mask = (K(1) << width) - 1;
  K distinct[kMaxRanks];
  int slot_of[kMaxRanks];
  const int unique = prefix_slots(state, count, high, distinct, slot_of);
  for (int i = threadIdx.x; i < unique * kBins; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for_each_key<T, K>(x, n, [&](K key) {
    const K p = key & high;
    // Unrolled over the slots so that distinct[] stays in registers (an index known only at
    // run time would put it in local memory, read for every key). The prefixes are distinct:
    // at most one slot matches.
#pragma unroll
    for (int u = 0; u < kMaxRanks; ++u)
      if (u < unique && p == distinct[u])
        atomicAdd(&local[u * kBins + static_cast<int>((key >> shift) & digit_mask)], 1u);
  });
  __syncthreads();
  const int bins = 1 << width;
  for (int i = threadIdx.x; i < unique * bins; i += blockDim.x) {
    const unsigned c = local[(i / bins) * kBins + i % bins];
    if (c) atomicAdd(&hist[(i / bins) * kBins + i % bins], static_cast<unsigned long long>(c));
  }
}

// One block per rank (blockIdx.x), kStepBins consecutive bins per thread: an exclusive scan of
// the threads' counts, then each thread walks its bins to the one holding the remaining rank,
// and the prefix is extended by it. hist: this pass's region (count, kBins), row slot_of[k]
// (prefix_slots above bit shift + width); in the first pass every rank reads row 0 (256 bins).
// Every pass has its own region (zeroed once by select_init), so no histogram is cleared
// while another rank's block may still read it.
template <class K>
__global__ void __launch_bounds__(kStepThreads)
    select_step(SelectState<K>* state, const unsigned long long* hist, int count, int shift,
                int width) {
  using Scan = cub::BlockScan<unsigned long long, kStepThreads>;
  __shared__ typename Scan::TempStorage scratch;
  __shared__ int found_bin;
  __shared__ unsigned long long found_before;
  const int k = blockIdx.x, t = threadIdx.x;
  K distinct[kMaxRanks];
  int slot_of[kMaxRanks];
  prefix_slots(state, count, prefix_mask<K>(shift + width), distinct, slot_of);
  const unsigned long long* h =
      hist + static_cast<int64_t>(slot_of[k]) * kBins + t * kStepBins;  // (kStepBins)
  const int bins = 1 << width;
  unsigned long long mine = 0;
  for (int i = 0; i < kStepBins && t * kStepBins + i < bins; ++i) mine += h[i];
  unsigned long long before;  // keys in the bins of lower threads
  Scan(scratch).ExclusiveSum(mine, before);
  const unsigned long long rem = state[k].remaining;  // < the keys under this prefix
  if (before <= rem && rem < before + mine) {          // exactly one thread
    int i = 0;
    while (before + h[i] <= rem) before += h[i++];
    found_bin = t * kStepBins + i;
    found_before = before;
  }
  __syncthreads();
  if (t == 0) {
    state[k].remaining = rem - found_before;
    state[k].prefix |= K(found_bin) << shift;
  }
}

// out[k] = the value whose bits are rank k's key (widened to O: f32 for bf16).
template <class T, class K, class O>
__global__ void select_write(const SelectState<K>* state, O* out, int count) {
  const int k = threadIdx.x;
  if (k >= count) return;
  T v;
  memcpy(&v, &state[k].prefix, sizeof(K));
  out[k] = to_acc(v);
}

// ---------------------------------------------------------------------------------------------
// The top 16 bits of |x|'s key (15 without the sign: the exponent and 7 mantissa bits) counted
// in one histogram of 2^15 bins, one pass over x: each block counts into its own shared copy
// (128 KB), flushed with integer atomics (order-independent: deterministic); then one block
// scans the bins to each rank's bin. For bf16 that is the whole key: the order statistics
// themselves. For f32 and f64 it is a prefix that holds about 1/128 of an octave of |x|: f32
// counts the low 16 bits under each rank's prefix in one more pass (low_key_histogram below),
// f64 compacts the keys under them and runs the radix passes on those.

constexpr int kWholeKeyBins = 1 << 15;
constexpr int kWholeKeyThreads = 1024;                          // both kernels' blocks
constexpr int kWholeKeyPerThread = kWholeKeyBins / kWholeKeyThreads;  // bins per scan thread
constexpr size_t kWholeKeyShared = kWholeKeyBins * sizeof(unsigned);

// Bits of a key below its top 16.
template <class T>
constexpr int kBelowTop16 = static_cast<int>(sizeof(typename KeyOf<T>::type) * 8) - 16;

// hist (kWholeKeyBins), zeroed: hist[top] += the keys of x whose top 16 bits are top.
template <class T>
__global__ void __launch_bounds__(kWholeKeyThreads)
    whole_key_histogram(const T* __restrict__ x, int64_t n,
                        unsigned long long* __restrict__ hist) {
  using K = typename KeyOf<T>::type;
  extern __shared__ unsigned int counts[];  // (kWholeKeyBins) this block's
  for (int i = threadIdx.x; i < kWholeKeyBins; i += blockDim.x) counts[i] = 0;
  __syncthreads();
  for_each_key<T, K>(x, n, [&](K key) {
    atomicAdd(&counts[static_cast<int>(key >> kBelowTop16<T>)], 1u);
  });
  __syncthreads();
  for (int i = threadIdx.x; i < kWholeKeyBins; i += blockDim.x)
    if (counts[i]) atomicAdd(&hist[i], static_cast<unsigned long long>(counts[i]));
}

// Every row of x (R, D) contiguous f32, a warp per row (rows grid-strided over the warps), held
// in registers (V vectors a lane): its statistics into rows (R, 5), and visit(v) for each element
// (the order statistics' first pass counts or partitions its key there).
template <int V, class Visit>
__device__ __forceinline__ void held_rows_with_statistics(const float* __restrict__ x, int64_t R,
                                                          int D, float* __restrict__ rows,
                                                          Visit&& visit) {
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; r < R;
       r += warps) {
    uint4 held[V];  // (V) vectors lane, lane + 32, ... of row r
    load_held_row(reinterpret_cast<const uint4*>(x + r * D), D / 4, held);
    held_row_statistics<float>(held, D, rows + r * 5, visit);
  }
}

// whole_key_histogram and row_statistics of x (R, D) contiguous f32 in one pass
// (held_rows_with_statistics): every key counted into the block's shared copy of the bins.
template <int V>
__global__ void __launch_bounds__(kWholeKeyThreads)
    rows_and_whole_key_histogram(const float* __restrict__ x, int64_t R, int D,
                                 float* __restrict__ rows, unsigned long long* __restrict__ hist) {
  extern __shared__ unsigned int counts[];  // (kWholeKeyBins) this block's
  for (int i = threadIdx.x; i < kWholeKeyBins; i += blockDim.x) counts[i] = 0;
  __syncthreads();
  held_rows_with_statistics<V>(x, R, D, rows, [&](float v) {
    atomicAdd(&counts[static_cast<int>(abs_key<float, uint32_t>(v) >> kBelowTop16<float>)], 1u);
  });
  __syncthreads();
  for (int i = threadIdx.x; i < kWholeKeyBins; i += blockDim.x)
    if (counts[i]) atomicAdd(&hist[i], static_cast<unsigned long long>(counts[i]));
}

// The sum of N consecutive bins at h (16-byte aligned) read in batches of 8 16-byte loads, all
// of a batch in flight before the first add. The selects run in one block on one SM on the
// metrics' stream, so their time is latency: reading the bins one dependent round at a time (a
// warp-wide sum per round) took about 15 us a select on the H100, three selects a layer.
template <int N, class C>
__device__ __forceinline__ unsigned long long sum_of_bins(const C* h) {
  constexpr int kPerLoad = 16 / sizeof(C), kLoads = N / kPerLoad, kBatch = 8;
  static_assert(N % kPerLoad == 0 && kLoads % kBatch == 0, "whole batches of 16-byte loads");
  const uint4* v = reinterpret_cast<const uint4*>(h);  // (kLoads)
  unsigned long long sum = 0;
#pragma unroll
  for (int b = 0; b < kLoads; b += kBatch) {
    uint4 c[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) c[i] = v[b + i];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const C* e = reinterpret_cast<const C*>(&c[i]);
#pragma unroll
      for (int j = 0; j < kPerLoad; ++j) sum += e[j];
    }
  }
  return sum;
}

// From hist (kWholeKeyBins), for each rank ranks.value[k] (< n) of |x|: bf16, out[k] = its
// value; f32 / f64, state[k] = {its top 16 bits in place, the rank left among the keys under
// them}. One block: each thread sums its kWholeKeyPerThread consecutive bins, an exclusive scan
// places them, and the thread holding a rank walks its bins to it.
template <class T, class O>
__global__ void __launch_bounds__(kWholeKeyThreads)
    whole_key_select(const unsigned long long* __restrict__ hist, Ranks ranks, O* out,
                     SelectState<typename KeyOf<T>::type>* state) {
  using K = typename KeyOf<T>::type;
  using Scan = cub::BlockScan<unsigned long long, kWholeKeyThreads>;
  __shared__ typename Scan::TempStorage scratch;
  const unsigned long long* h = hist + threadIdx.x * kWholeKeyPerThread;  // (kWholeKeyPerThread)
  const unsigned long long mine = sum_of_bins<kWholeKeyPerThread>(h);
  unsigned long long before;  // keys in the bins of lower threads
  Scan(scratch).ExclusiveSum(mine, before);
  for (int k = 0; k < ranks.count; ++k) {
    const unsigned long long rank = ranks.value[k];
    if (rank < before || rank >= before + mine) continue;  // exactly one thread goes on
    unsigned long long below = before;
    int i = 0;
    while (below + h[i] <= rank) below += h[i++];
    const K top = static_cast<K>(threadIdx.x * kWholeKeyPerThread + i);
    if constexpr (kBelowTop16<T> == 0) {
      T v;
      memcpy(&v, &top, sizeof(top));
      out[k] = to_acc(v);
    } else {
      state[k] = {static_cast<K>(top << kBelowTop16<T>), rank - below};
    }
  }
}

// Whether this device gives a block the whole-key histogram's shared memory (opted in once).
template <class T>
bool whole_key_fits() {
  static const bool fits = [] {
    const int limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    if (static_cast<size_t>(limit) < kWholeKeyShared) return false;
    auto opt_in = [](auto kernel) {
      SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(kWholeKeyShared)));
    };
    opt_in(whole_key_histogram<T>);
    if constexpr (std::is_same_v<T, float>)
      for (int held : {1, 2, 4, 8})
        with_held_vectors(held, [&](auto v) { opt_in(rows_and_whole_key_histogram<v.value>); });
    return true;
  }();
  return fits;
}

unsigned multiprocessors() {
  static const unsigned sms =
      static_cast<unsigned>(device_attribute(cudaDevAttrMultiProcessorCount));
  return sms;
}

// bf16: out (count) = the order statistics; f32 / f64: state (count) = the rank's top 16 bits.
// rows: when set (f32 x (R, D) whose rows can be held, `held` vectors a lane), the histogram's
// pass also writes row_statistics(x) there.
template <class T>
void queue_whole_key_select(const Tensor& x, const Ranks& ranks, Tensor* out,
                            SelectState<typename KeyOf<T>::type>* state, Tensor* rows = nullptr,
                            int held = 0) {
  const int64_t n = x.numel();
  Tensor hist = Tensor::empty({2 * kWholeKeyBins}, DType::I32, x.device());  // (bins) u64
  auto* h = static_cast<unsigned long long*>(hist.raw_data());
  SINKLAB_CUDA_CHECK(cudaMemsetAsync(h, 0, kWholeKeyBins * sizeof(unsigned long long), stream()));
  // One block per SM (its 128 KB of counts allow no second), fewer for a small x.
  const unsigned blocks = std::max<unsigned>(
      1, std::min<unsigned>(blocks_for(n, 16 * kWholeKeyThreads), multiprocessors()));
  if constexpr (std::is_same_v<T, float>) {
    if (rows != nullptr) {
      const int64_t D = x.size(-1);
      with_held_vectors(held, [&](auto v) {
        rows_and_whole_key_histogram<v.value><<<blocks, kWholeKeyThreads, kWholeKeyShared,
                                                 stream()>>>(x.data<float>(), n / D,
                                                             static_cast<int>(D),
                                                             rows->data<float>(), h);
      });
    }
  }
  if (rows == nullptr)
    whole_key_histogram<T><<<blocks, kWholeKeyThreads, kWholeKeyShared, stream()>>>(
        static_cast<const T*>(x.raw_data()), n, h);
  SINKLAB_KERNEL_CHECK("abs_order_statistics whole-key histogram");
  using O = typename AccumulateIn<T>::type;
  whole_key_select<T, O><<<1, kWholeKeyThreads, 0, stream()>>>(
      h, ranks, out ? out->data<O>() : nullptr, state);
  SINKLAB_KERNEL_CHECK("abs_order_statistics whole-key select");
}

// ---------------------------------------------------------------------------------------------
// f32 from 2^20 elements: the low 16 bits after the whole-key histogram. whole_key_select left
// each rank's top 16 bits and its rank among the keys under them in state; one more pass over x
// counts the low 16 bits of the keys under each distinct prefix into a 2^16-bin histogram per
// prefix, in global memory (the keys under a 16-bit prefix are about 1/128 of an octave of |x|:
// few enough for global atomics, and a warp adds its equal keys with one atomic, for ties; an
// input whose keys all share one value sends about n / 32 atomics to one bin: exact, slower);
// then one block per rank scans its histogram to the key. Two passes over x in all, against
// three (histogram, partition, radix passes over the candidates) for the brackets below.

constexpr int kLowBits = 16;
constexpr int kLowBins = 1 << kLowBits;
constexpr int kLowThreads = 1024;                                // low_key_select's block
constexpr int kLowPerThread = kLowBins / kLowThreads;            // bins per scan thread

// The histogram row of rank k: that of the first rank with the same top 16 bits.
__device__ int low_key_row(const SelectState<uint32_t>* state, int k) {
  const uint32_t top = state[k].prefix & prefix_mask<uint32_t>(kLowBits);
  int j = 0;
  while ((state[j].prefix & prefix_mask<uint32_t>(kLowBits)) != top) ++j;
  return j;
}

// hist (count, kLowBins) u32, zeroed: row low_key_row(k) counts the low 16 bits of the keys of
// x (n < 2^32) under rank k's top 16 bits. A bitmap of the owners' top 16 bits in shared memory
// (4 KB) turns away the other keys with one shared load each; a key that passes finds its
// owner among at most kMaxRanks prefixes (comparing every key with each of them had made the
// pass compute-bound: 62 us over GPT-2's f32 residual on the H100, against 43 us for the
// histogram pass that also computes the row statistics).
template <class T>
__global__ void __launch_bounds__(256)
    low_key_histogram(const T* __restrict__ x, int64_t n,
                      const SelectState<uint32_t>* __restrict__ state, int count,
                      unsigned* __restrict__ hist) {
  using K = uint32_t;
  __shared__ unsigned owned[kWholeKeyBins / 32];  // bit t: top 16 bits t belong to a rank
  __shared__ K top[kMaxRanks];  // the owners' top 16 bits (low bits zero); all ones for others
  for (int i = threadIdx.x; i < kWholeKeyBins / 32; i += blockDim.x) owned[i] = 0;
  __syncthreads();
  if (threadIdx.x < kMaxRanks) {
    const int k = threadIdx.x;
    K t = k < count ? state[k].prefix & prefix_mask<K>(kLowBits) : ~K(0);
    for (int j = 0; j < k; ++j)
      if ((state[j].prefix & prefix_mask<K>(kLowBits)) == t) t = ~K(0);  // not the first
    top[k] = t;
    if (t != ~K(0)) atomicOr(&owned[(t >> kLowBits) / 32], 1u << ((t >> kLowBits) % 32));
  }
  __syncthreads();
  for_each_key<T, K>(x, n, [&](K key) {
    const unsigned t = key >> kLowBits;  // < 2^15: the sign bit is clear
    if (!((owned[t / 32] >> (t % 32)) & 1u)) return;
    int k = 0;
    while (top[k] != (key & prefix_mask<K>(kLowBits))) ++k;  // an owner matches
    const unsigned bin = k * kLowBins + (key & (kLowBins - 1));
    const unsigned peers = __match_any_sync(__activemask(), bin);  // lanes with this bin
    if (threadIdx.x % 32 == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
  });
}

// One block per rank k (blockIdx.x): its histogram row scanned to the bin that holds
// state[k].remaining; out[k] = the value whose bits are the top 16 and that bin.
template <class T>
__global__ void __launch_bounds__(kLowThreads)
    low_key_select(const unsigned* __restrict__ hist,
                   const SelectState<uint32_t>* __restrict__ state,
                   T* __restrict__ out) {
  using K = uint32_t;
  using Scan = cub::BlockScan<unsigned long long, kLowThreads>;
  __shared__ typename Scan::TempStorage scratch;
  const int k = blockIdx.x;
  const unsigned* h = hist + static_cast<int64_t>(low_key_row(state, k)) * kLowBins +
                      threadIdx.x * kLowPerThread;  // (kLowPerThread) this thread's bins
  const unsigned long long mine = sum_of_bins<kLowPerThread>(h);
  unsigned long long before;  // keys in the bins of lower threads
  Scan(scratch).ExclusiveSum(mine, before);
  const unsigned long long rem = state[k].remaining;  // < the keys under the prefix
  if (rem < before || rem >= before + mine) return;   // exactly one thread goes on
  int i = 0;
  while (before + h[i] <= rem) before += h[i++];
  const K key = state[k].prefix | static_cast<K>(threadIdx.x * kLowPerThread + i);
  T v;
  memcpy(&v, &key, sizeof(K));
  out[k] = v;
}

// f32 x (2^20 <= n < 2^32) on a device with the whole-key histogram's shared memory: out
// (count) = the order statistics of |x|, in the two passes above.
// rows, held: as queue_whole_key_select's.
void queue_two_pass_select(const Tensor& x, const Ranks& ranks, Tensor& out,
                           Tensor* rows = nullptr, int held = 0) {
  using K = uint32_t;
  const int64_t n = x.numel();
  // Workspace: state (kMaxRanks), then hist (count, kLowBins) u32.
  const int64_t state_bytes = kMaxRanks * static_cast<int64_t>(sizeof(SelectState<K>));
  const int64_t hist_bytes = static_cast<int64_t>(ranks.count) * kLowBins * sizeof(unsigned);
  Tensor workspace =
      Tensor::empty({(state_bytes + hist_bytes) / 4}, DType::I32, x.device());  // bytes / 4
  auto* state = static_cast<SelectState<K>*>(workspace.raw_data());
  auto* hist = reinterpret_cast<unsigned*>(static_cast<char*>(workspace.raw_data()) + state_bytes);
  SINKLAB_CUDA_CHECK(cudaMemsetAsync(hist, 0, static_cast<size_t>(hist_bytes), stream()));
  queue_whole_key_select<float>(x, ranks, nullptr, state, rows, held);
  const float* px = static_cast<const float*>(x.raw_data());  // (n)
  const unsigned blocks = std::min<unsigned>(blocks_for(n, 256 * 8), multiprocessors() * 8u);
  low_key_histogram<float><<<blocks, 256, 0, stream()>>>(px, n, state, ranks.count, hist);
  SINKLAB_KERNEL_CHECK("abs_order_statistics low-key histogram");
  low_key_select<float><<<ranks.count, kLowThreads, 0, stream()>>>(hist, state,
                                                                   out.data<float>());
  SINKLAB_KERNEL_CHECK("abs_order_statistics low-key select");
}

// ---------------------------------------------------------------------------------------------
// Sampled brackets: one pass over x instead of the radix passes, for large x.

constexpr int64_t kBracketMinN = int64_t{1} << 20;  // smaller x: the radix passes over x
constexpr int kStage = 4096;                         // candidates staged per block

// counts (2 kMaxRanks + 1): below[b] = keys < lo[b], inside[b] = keys in [lo[b], hi[b]], then
// the candidates met.
constexpr int kCountSlots = 2 * kMaxRanks + 1;
static_assert(kBracketMaxRanks == kMaxRanks, "one rank limit for the select and its brackets");

// sample (kBracketSample) = keys of x at the hashed positions.
template <class T, class K>
__global__ void bracket_sample(const T* __restrict__ x, int64_t n, K* __restrict__ sample) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < kBracketSample) sample[i] = abs_key<T, K>(x[bracket_sample_index(i, n)]);
}

// One thread: plan_brackets (cuda/order_brackets.h) on the sorted sample.
template <class K>
__global__ void bracket_plan(const K* __restrict__ sorted, Ranks ranks, int64_t n,
                             BracketPlan<K>* __restrict__ plan) {
  if (blockIdx.x == 0 && threadIdx.x == 0) plan_brackets(sorted, ranks.value, ranks.count, n, *plan);
}

// One thread: plan_prefix_brackets on the ranks' top-16-bit prefixes that whole_key_select left in
// state (their low_bits low bits zero).
template <class K>
__global__ void prefix_bracket_plan(const SelectState<K>* __restrict__ state, int count,
                                    int low_bits, BracketPlan<K>* __restrict__ plan) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  K prefixes[kMaxRanks];
  for (int k = 0; k < count; ++k) prefixes[k] = state[k].prefix;
  plan_prefix_brackets(prefixes, count, low_bits, *plan);
}

// One pass's partition of keys by the brackets of a plan: per bracket, the keys below it and
// inside it; the keys inside (the bits of |x|) are written to compact (capacity cap;
// counts[2 kMaxRanks] counts every one, so an overflow is seen). A block stages its candidates
// in shared memory and writes them with one reservation. NB: an upper bound of the brackets, so
// that the counters stay in registers. Every thread of the block constructs one (after which
// the block synchronises), visits its keys, and calls finish.
template <class K, int NB>
struct BracketPartition {
  struct Shared {
    K lo[NB], hi[NB];
    unsigned long long block_counts[2 * NB];
    K stage[kStage];
    unsigned staged;
    unsigned long long base;
  };
  Shared& sh;
  K* compact;
  int64_t cap;
  unsigned long long* counts;  // (kCountSlots) the pass's totals
  K l[NB], h[NB];
  unsigned below[NB], inside[NB];  // this thread's

  __device__ BracketPartition(Shared& shared, const BracketPlan<K>* plan, K* compact_keys,
                              int64_t capacity, unsigned long long* totals)
      : sh(shared), compact(compact_keys), cap(capacity), counts(totals) {
    if (threadIdx.x < NB) {
      sh.lo[threadIdx.x] = plan->lo[threadIdx.x];
      sh.hi[threadIdx.x] = plan->hi[threadIdx.x];
    }
    if (threadIdx.x < 2 * NB) sh.block_counts[threadIdx.x] = 0;
    if (threadIdx.x == 0) sh.staged = 0;
    __syncthreads();
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      l[b] = sh.lo[b];
      h[b] = sh.hi[b];
      below[b] = inside[b] = 0;
    }
  }

  __device__ __forceinline__ void visit(K key) {
    bool candidate = false;
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      below[b] += key < l[b];
      const bool in = key >= l[b] && key <= h[b];
      inside[b] += in;
      candidate |= in;
    }
    if (candidate) {
      const unsigned slot = atomicAdd(&sh.staged, 1u);
      if (slot < kStage) {
        sh.stage[slot] = key;
      } else {  // a full stage: straight to the buffer
        const unsigned long long g = atomicAdd(&counts[2 * kMaxRanks], 1ull);
        if (g < static_cast<unsigned long long>(cap)) compact[g] = key;
      }
    }
  }

  // Every thread of the block: the counts summed into counts, the staged keys written out.
  __device__ void finish() {
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      unsigned long long vb = below[b], vi = inside[b];
      for (int offset = 16; offset > 0; offset >>= 1) {
        vb += __shfl_xor_sync(0xffffffffu, vb, offset);
        vi += __shfl_xor_sync(0xffffffffu, vi, offset);
      }
      if (threadIdx.x % 32 == 0) {
        atomicAdd(&sh.block_counts[b], vb);
        atomicAdd(&sh.block_counts[NB + b], vi);
      }
    }
    __syncthreads();
    const unsigned kept = sh.staged < kStage ? sh.staged : kStage;
    if (threadIdx.x == 0)
      sh.base = atomicAdd(&counts[2 * kMaxRanks], static_cast<unsigned long long>(kept));
    if (threadIdx.x < NB) {
      atomicAdd(&counts[threadIdx.x], sh.block_counts[threadIdx.x]);
      atomicAdd(&counts[kMaxRanks + threadIdx.x], sh.block_counts[NB + threadIdx.x]);
    }
    __syncthreads();
    for (unsigned i = threadIdx.x; i < kept; i += blockDim.x)
      if (sh.base + i < static_cast<unsigned long long>(cap)) compact[sh.base + i] = sh.stage[i];
  }
};

// One pass over x partitioned by the plan's brackets (BracketPartition).
template <class T, class K, int NB>
__global__ void __launch_bounds__(256)
    bracket_partition(const T* __restrict__ x, int64_t n, const BracketPlan<K>* __restrict__ plan,
                      K* __restrict__ compact, int64_t cap,
                      unsigned long long* __restrict__ counts) {
  __shared__ typename BracketPartition<K, NB>::Shared shared;
  BracketPartition<K, NB> partition(shared, plan, compact, cap, counts);
  for_each_key<T, K>(x, n, [&](K key) { partition.visit(key); });
  partition.finish();
}

// bracket_partition and row_statistics of x (R, D) contiguous f32 in one pass
// (held_rows_with_statistics): every key visited by the partition. With sampled brackets
// this one pass replaces rows_and_whole_key_histogram and low_key_histogram (two passes).
template <int V, int NB>
__global__ void __launch_bounds__(256)
    rows_and_bracket_partition(const float* __restrict__ x, int64_t R, int D,
                               float* __restrict__ rows,
                               const BracketPlan<uint32_t>* __restrict__ plan,
                               uint32_t* __restrict__ compact, int64_t cap,
                               unsigned long long* __restrict__ counts) {
  __shared__ typename BracketPartition<uint32_t, NB>::Shared shared;
  BracketPartition<uint32_t, NB> partition(shared, plan, compact, cap, counts);
  held_rows_with_statistics<V>(x, R, D, rows,
                               [&](float v) { partition.visit(abs_key<float, uint32_t>(v)); });
  partition.finish();
}

// One thread: resolve_brackets (cuda/order_brackets.h); the select then runs on the candidates
// with each rank's place among them, or on x with the ranks as asked.
template <class K>
__global__ void bracket_resolve(const BracketPlan<K>* __restrict__ plan,
                                const unsigned long long* __restrict__ counts, Ranks ranks,
                                int64_t cap, SelectState<K>* __restrict__ state,
                                int* __restrict__ use_compact) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  unsigned long long place[kMaxRanks];
  const bool ok = resolve_brackets(*plan, counts, counts + kMaxRanks, counts[2 * kMaxRanks],
                                   ranks.value, ranks.count, cap, place);
  for (int k = 0; k < ranks.count; ++k) state[k] = {K(0), ok ? place[k] : ranks.value[k]};
  *use_compact = ok ? 1 : 0;
}

// Queues the brackets for x (n >= kBracketMinN): the returned source reads the compacted
// candidates when every rank was bracketed, x otherwise; state then holds the matching ranks.
// The brackets are each rank's top-16-bit bin when from_prefixes (state holds the prefixes
// whole_key_select found), else sampled quantile ranges. The buffers are stream-ordered
// allocations kept alive by `keep` until the passes are queued.
// rows: when set (f32 x (R, D) whose rows can be held, `held` vectors a lane; sampled ranges
// only), the partition's pass also writes row_statistics(x) there.
template <class T, class K>
SelectSource<T> queue_brackets(const Tensor& x, const Ranks& ranks, SelectState<K>* state,
                               bool from_prefixes, std::vector<Tensor>& keep,
                               Tensor* rows = nullptr, int held = 0) {
  const int64_t n = x.numel();
  const T* px = static_cast<const T*>(x.raw_data());  // (n)
  // Capacity: a sixteenth of x (the median's sampled bracket holds about 1.6%, its 16-bit bin
  // about 0.3% for normal data). The passes read only the candidates met (SelectSource::met),
  // so the rest is never cleared.
  const int64_t cap = std::min<int64_t>(n, n / 16 + kBracketSample);
  const int64_t compact_words = (cap * static_cast<int64_t>(sizeof(T)) + 3) / 4;
  keep.push_back(Tensor::empty({compact_words}, DType::I32, x.device()));  // (cap) T, as words
  T* compact = static_cast<T*>(keep.back().raw_data());
  // Small buffers: sample and sorted (kBracketSample keys each), plan, counts, flag, cub's scratch.
  size_t sort_bytes = 0;
  SINKLAB_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, sort_bytes, static_cast<K*>(nullptr),
                                                    static_cast<K*>(nullptr), kBracketSample, 0,
                                                    static_cast<int>(sizeof(K) * 8), stream()));
  const size_t keys_bytes = kBracketSample * sizeof(K);
  const size_t plan_at = 2 * keys_bytes;
  const size_t counts_at = (plan_at + sizeof(BracketPlan<K>) + 15) / 16 * 16;
  const size_t flag_at = counts_at + kCountSlots * sizeof(unsigned long long);
  const size_t sort_at = (flag_at + sizeof(int) + 255) / 256 * 256;
  const size_t bytes = sort_at + sort_bytes;
  keep.push_back(Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::I32, x.device()));
  char* base = static_cast<char*>(keep.back().raw_data());
  K* sample = reinterpret_cast<K*>(base);
  K* sorted = reinterpret_cast<K*>(base + keys_bytes);
  auto* plan = reinterpret_cast<BracketPlan<K>*>(base + plan_at);
  auto* counts = reinterpret_cast<unsigned long long*>(base + counts_at);
  int* flag = reinterpret_cast<int*>(base + flag_at);
  SINKLAB_CUDA_CHECK(cudaMemsetAsync(counts, 0, kCountSlots * sizeof(unsigned long long), stream()));
  if (from_prefixes) {
    prefix_bracket_plan<K><<<1, 1, 0, stream()>>>(state, ranks.count, kBelowTop16<T>, plan);
  } else {
    bracket_sample<T, K><<<kBracketSample / 256, 256, 0, stream()>>>(px, n, sample);
    SINKLAB_KERNEL_CHECK("abs_order_statistics sample");
    SINKLAB_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(base + sort_at, sort_bytes, sample, sorted,
                                                      kBracketSample, 0,
                                                      static_cast<int>(sizeof(K) * 8), stream()));
    bracket_plan<K><<<1, 1, 0, stream()>>>(sorted, ranks, n, plan);
  }
  SINKLAB_KERNEL_CHECK("abs_order_statistics brackets");
  // 16 blocks per SM: a block meets about 0.016 n / blocks candidates, well under kStage.
  const unsigned blocks = std::min<unsigned>(blocks_for(n, 256), multiprocessors() * 16u);
  SINKLAB_CHECK((rows == nullptr || std::is_same_v<T, float>), ValueError,
                "abs_order_statistics: row statistics with the brackets of a non-f32 x",
                "an internal error: only f32 rows are held in registers");
  if constexpr (std::is_same_v<T, float>) {
    if (rows != nullptr) {
      SINKLAB_CHECK(!from_prefixes, ValueError, "abs_order_statistics: rows with prefix brackets",
                    "an internal error: the rows' pass takes sampled brackets");
      const int64_t D = x.size(-1), R = n / D;
      const unsigned row_blocks = std::min<unsigned>(blocks_for(R, 8), multiprocessors() * 8u);
      // The median pair and the top ranks (the sink metrics) merge into 2 ranges: counters for
      // 2, else for every rank.
      const bool two = sampled_bracket_bound(ranks.value, ranks.count, n) <= 2;
      with_held_vectors(held, [&](auto v) {
        auto launch = [&](auto nb) {
          rows_and_bracket_partition<v.value, decltype(nb)::value>
              <<<row_blocks, 256, 0, stream()>>>(px, R, static_cast<int>(D), rows->data<float>(),
                                                 plan, reinterpret_cast<uint32_t*>(compact),
                                                 cap, counts);
        };
        if (two)
          launch(std::integral_constant<int, 2>{});
        else
          launch(std::integral_constant<int, kMaxRanks>{});
      });
      SINKLAB_KERNEL_CHECK("rows_and_abs_order_statistics rows and partition");
    }
  }
  auto partition = [&](auto nb) {
    bracket_partition<T, K, decltype(nb)::value><<<blocks, 256, 0, stream()>>>(
        px, n, plan, reinterpret_cast<K*>(compact), cap, counts);
  };
  if (rows == nullptr) {
    switch (ranks.count) {  // the counters of at most `count` brackets, in registers
      case 1: partition(std::integral_constant<int, 1>{}); break;
      case 2: partition(std::integral_constant<int, 2>{}); break;
      case 3: partition(std::integral_constant<int, 3>{}); break;
      case 4: partition(std::integral_constant<int, 4>{}); break;
      case 5: partition(std::integral_constant<int, 5>{}); break;
      case 6: partition(std::integral_constant<int, 6>{}); break;
      case 7: partition(std::integral_constant<int, 7>{}); break;
      default: partition(std::integral_constant<int, kMaxRanks>{}); break;
    }
    SINKLAB_KERNEL_CHECK("abs_order_statistics partition");
  }
  bracket_resolve<K><<<1, 1, 0, stream()>>>(plan, counts, ranks, cap, state, flag);
  SINKLAB_KERNEL_CHECK("abs_order_statistics resolve");
  SelectSource<T> source{px, n};
  source.compact = compact;
  source.compact_n = cap;
  source.use_compact = flag;
  source.met = counts + 2 * kMaxRanks;  // bracket_resolve sets the flag only when they fit
  return source;
}

// rows: when set (f32 x (R, D) of n >= kBracketMinN whose rows can be held, `held` vectors a
// lane), the sampled brackets' pass also writes row_statistics(x) there: one read of x for
// both, where the whole-key path below takes two.
template <class T>
void abs_order_statistics_typed(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out,
                                Tensor* rows = nullptr, int held = 0) {
  using K = typename KeyOf<T>::type;
  const int count = static_cast<int>(ranks.size());
  const Ranks r = ranks_of(ranks);
  const int64_t n = x.numel();
  if (rows == nullptr) {
    if constexpr (sizeof(K) == 2) {  // bf16: one histogram of every key, where the device allows
      if (whole_key_fits<T>()) {
        queue_whole_key_select<T>(x, r, &out, nullptr);
        return;
      }
    }
    if constexpr (std::is_same_v<T, float>) {  // large f32: the top 16 bits, then the low 16
      if (n >= kBracketMinN && n < (int64_t{1} << 32) && whole_key_fits<T>()) {
        queue_two_pass_select(x, r, out);
        return;
      }
    }
  }
  // Digit widths, most significant first: 8, then 12 (the last one what is left).
  const int bits = static_cast<int>(sizeof(K) * 8);
  std::vector<int> widths{kFirstDigitBits};
  for (int left = bits - kFirstDigitBits; left > 0; left -= kDigitBits)
    widths.push_back(std::min(left, kDigitBits));
  const int passes = static_cast<int>(widths.size());
  // Workspace: state (kMaxRanks), hist (passes, count, kBins), as one byte buffer on the
  // stream's pool.
  const int64_t state_bytes = kMaxRanks * static_cast<int64_t>(sizeof(SelectState<K>));
  const int64_t region = static_cast<int64_t>(count) * kBins;  // one pass's histograms
  const int64_t bytes = state_bytes + passes * region * 8;
  Tensor workspace = Tensor::empty({(bytes + 3) / 4}, DType::I32, x.device());  // bytes / 4
  auto* state = static_cast<SelectState<K>*>(workspace.raw_data());
  auto* hist = reinterpret_cast<unsigned long long*>(static_cast<char*>(workspace.raw_data()) +
                                                     state_bytes);
  select_init<K><<<blocks_for(passes * region, 256), 256, 0, stream()>>>(state, hist,
                                                                          passes * region, r);
  SINKLAB_KERNEL_CHECK("abs_order_statistics init");
  const size_t shared = static_cast<size_t>(count) * kBins * sizeof(unsigned);
  // Opt into what the most ranks need, or the device's limit when that is lower (99 KB on
  // sm_86/89: up to 6 ranks per call there); a call beyond it is refused below.
  static const size_t opted = [] {
    const int limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    const size_t bytes = std::min<size_t>(kMaxRanks * kBins * sizeof(unsigned),
                                          static_cast<size_t>(limit));
    SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(select_histogram<T, K>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
    return bytes;
  }();
  SINKLAB_CHECK(shared <= opted, ShapeError,
                "abs_order_statistics: " << count << " ranks need " << shared
                                         << " bytes of shared memory; this GPU allows "
                                         << opted,
                "ask for at most " + std::to_string(opted / (kBins * sizeof(unsigned))) +
                    " ranks per call");
  // Enough blocks to stream x at full bandwidth; each flushes its histograms once.
  const unsigned blocks = std::min<unsigned>(blocks_for(n, 256), multiprocessors() * 4u);
  using O = typename AccumulateIn<T>::type;
  // Radix pass p (>= 1) over source with `grid` blocks: the digit of `width` bits at `shift`,
  // counted into its own zeroed histogram region, then every rank's prefix extended by it.
  auto radix_pass = [&](const SelectSource<T>& source, unsigned grid, int p, int shift,
                        int width) {
    unsigned long long* pass_hist = hist + p * region;  // (count, kBins)
    select_histogram<T, K><<<grid, 256, shared, stream()>>>(source, state, pass_hist, count,
                                                            shift, width);
    SINKLAB_KERNEL_CHECK("abs_order_statistics histogram");
    select_step<K><<<count, kStepThreads, 0, stream()>>>(state, pass_hist, count, shift, width);
    SINKLAB_KERNEL_CHECK("abs_order_statistics step");
  };
  int shift = bits - kFirstDigitBits;
  // Large x: one pass compacts the keys of a bracket around each rank, so that the radix passes
  // read only those candidates (or x where a rank fell outside its bracket or the candidates
  // overflowed). The brackets are the ranks' top-16-bit bins, from one histogram of every key's
  // top 16 bits, where the device gives a block its 128 KB; sampled quantile ranges elsewhere.
  std::vector<Tensor> keep;  // the brackets' buffers, until the passes are queued
  SelectSource<T> source{static_cast<const T*>(x.raw_data()), n};
  if (n >= kBracketMinN) {
    const bool from_prefixes = rows == nullptr && whole_key_fits<T>();
    if (from_prefixes) queue_whole_key_select<T>(x, r, nullptr, state);
    source = queue_brackets<T, K>(x, r, state, from_prefixes, keep, rows, held);
  }
  // Over the brackets' candidates (at most a sixteenth of x) one block per SM: each block
  // clears and flushes its histograms once, which costs more than its share of keys at 4 per
  // SM. Where a rank missed its bracket they read x with these blocks, more slowly (rare).
  const unsigned pass_blocks = n >= kBracketMinN ? multiprocessors() : blocks;
  select_first_histogram<T, K><<<pass_blocks, 256, 0, stream()>>>(source, hist);
  SINKLAB_KERNEL_CHECK("abs_order_statistics first histogram");
  select_step<K><<<count, kStepThreads, 0, stream()>>>(state, hist, count, shift, widths[0]);
  SINKLAB_KERNEL_CHECK("abs_order_statistics first step");
  for (int p = 1; p < passes; ++p) {
    shift -= widths[p];
    radix_pass(source, pass_blocks, p, shift, widths[p]);
  }
  select_write<T, K, O><<<1, 32, 0, stream()>>>(state, out.data<O>(), count);
  SINKLAB_KERNEL_CHECK("abs_order_statistics write");
}

void check_rank_count(const Tensor& x, const std::vector<int64_t>& ranks, const char* op) {
  SINKLAB_CHECK(ranks.size() <= static_cast<size_t>(kMaxRanks), ShapeError,
                op << ": " << ranks.size() << " ranks in one call on " << x.device().str()
                   << " (at most " << kMaxRanks << ")",
                "split the ranks over several calls");
}

void abs_order_statistics_cuda(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out) {
  check_rank_count(x, ranks, "abs_order_statistics");
  dispatch_storage(x.dtype(), "abs_order_statistics", [&](auto zero) {
    abs_order_statistics_typed<decltype(zero)>(x, ranks, out);
  });
}

// A large f32 x whose rows can be held: the row statistics from the sampled brackets' pass with
// ops::one_pass_order_statistics (one read of x, then the select over the candidates; x again
// only where a rank missed its bracket), else from the whole-key histogram's pass (two reads of
// x in all instead of three); otherwise the two ops one after the other.
void rows_and_abs_order_statistics_cuda(const Tensor& x, const std::vector<int64_t>& ranks,
                                        Tensor& rows, Tensor& order) {
  check_rank_count(x, ranks, "rows_and_abs_order_statistics");
  const int64_t n = x.numel(), D = x.size(-1);
  const int held = x.dtype() == DType::F32 ? held_vectors_per_lane(x.data<float>(), D, D) : 0;
  if (held > 0 && !ranks.empty() && n >= kBracketMinN && ops::one_pass_order_statistics) {
    abs_order_statistics_typed<float>(x, ranks, order, &rows, held);
    return;
  }
  if (held > 0 && !ranks.empty() && n >= kBracketMinN && n < (int64_t{1} << 32) &&
      whole_key_fits<float>()) {
    queue_two_pass_select(x, ranks_of(ranks), order, &rows, held);
    return;
  }
  row_statistics_cuda(x, rows);
  if (!ranks.empty()) abs_order_statistics_cuda(x, ranks, order);
}

// One thread per row: group_rows (R, G, 5) -> out (R), ops::pooled_variance's formulas in T
// (f32 or f64) in the CPU's order.
template <class T>
__global__ void pooled_variance_kernel(const T* __restrict__ group_rows, T* __restrict__ out,
                                       int64_t R, int64_t G) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= R) return;
  const T* groups = group_rows + r * G * ops::kRowStats;  // (G, 5)
  T mean = 0, within = 0;
  for (int64_t g = 0; g < G; ++g) {
    mean += groups[g * ops::kRowStats + ops::kRowMean];
    within += groups[g * ops::kRowStats + ops::kRowVariance];
  }
  mean /= static_cast<T>(G);
  T between = 0;
  for (int64_t g = 0; g < G; ++g) {
    const T c = groups[g * ops::kRowStats + ops::kRowMean] - mean;
    between += c * c;
  }
  out[r] = (within + between) / static_cast<T>(G);
}

void pooled_variance_cuda(const Tensor& group_rows, Tensor& out) {
  const int64_t R = out.numel(), G = group_rows.size(-2);
  dispatch_float(group_rows.dtype(), "pooled_variance", [&](auto zero) {
    using T = decltype(zero);
    pooled_variance_kernel<T><<<blocks_for(R, 256), 256, 0, stream()>>>(group_rows.data<T>(),
                                                                       out.data<T>(), R, G);
    SINKLAB_KERNEL_CHECK("pooled_variance");
  });
}

}  // namespace

void install_statistics_kernels() {
  ops::row_statistics_kernels.cuda_forward = row_statistics_cuda;
  ops::abs_order_statistics_kernels.cuda_forward = abs_order_statistics_cuda;
  ops::rows_and_abs_order_statistics_kernels.cuda_forward = rows_and_abs_order_statistics_cuda;
  ops::pooled_variance_kernels.cuda_forward = pooled_variance_cuda;
}

}  // namespace sinklab::cuda
