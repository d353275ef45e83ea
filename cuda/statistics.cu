// CUDA twins of ops/cpu/statistics (see ops/statistics.h), for the sink metrics on the device.
//
// row_statistics: one warp per row (8 rows per block of 256 threads); the warp sums the row,
//   then the squared deviations from the mean, the squares and |x| (and takes max |x|),
//   lane-strided, and reduces with
//   xor shuffles: a fixed order, so results are bit-identical across runs. Sums in the tensor's
//   type (f32 / f64).
// abs_order_statistics: an exact radix select over the bit patterns of |x| (sign bit cleared:
//   for non-negative IEEE values the unsigned bit order is the numeric order, NaN above +inf).
//   8 bits per pass, most significant first (4 passes for f32, 8 for f64); every pass reads x
//   once for all requested ranks together: a histogram kernel counts the next digit of the keys
//   that match each rank's prefix so far (per-block shared histograms fed by warp-aggregated
//   atomics, flushed with integer atomics: order-independent, so deterministic), then a one-block kernel walks each
//   histogram to the bin holding the remaining rank and extends the prefix. No host sync.
#include <cstdint>
#include <cstring>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/statistics.h"

namespace sinklab::cuda {

namespace {

constexpr int kMaxRanks = 8;
constexpr int kBins = 256;

template <class T>
__device__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__global__ void row_statistics_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t R,
                                      int64_t D) {
  const int lane = threadIdx.x % 32;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= R) return;
  const T* row = x + r * D;  // (D)
  T sum = 0;
  for (int64_t d = lane; d < D; d += 32) sum += row[d];
  const T mean = warp_sum(sum) / static_cast<T>(D);
  T dev = 0, sq = 0, sum_abs = 0, max_abs = 0;
  for (int64_t d = lane; d < D; d += 32) {
    const T v = row[d];
    dev += (v - mean) * (v - mean);
    sq += v * v;
    sum_abs += fabs(v);
    max_abs = fmax(max_abs, fabs(v));
  }
  dev = warp_sum(dev);
  sq = warp_sum(sq);
  sum_abs = warp_sum(sum_abs);
  for (int offset = 16; offset > 0; offset >>= 1)
    max_abs = fmax(max_abs, __shfl_xor_sync(0xffffffffu, max_abs, offset));
  if (lane == 0) {
    T* o = out + r * 5;  // (5): mean, variance, l2 norm, mean |x|, max |x|
    o[0] = mean;
    o[1] = dev / static_cast<T>(D);
    o[2] = sqrt(sq);
    o[3] = sum_abs / static_cast<T>(D);
    o[4] = max_abs;
  }
}

void row_statistics_cuda(const Tensor& x, Tensor& out) {
  const int64_t R = out.size(0), D = x.numel() / R;
  const unsigned blocks = blocks_for(R, 8);
  if (x.dtype() == DType::F32)
    row_statistics_kernel<<<blocks, 256, 0, stream()>>>(x.data<float>(), out.data<float>(), R, D);
  else
    row_statistics_kernel<<<blocks, 256, 0, stream()>>>(x.data<double>(), out.data<double>(), R,
                                                        D);
  SINKLAB_KERNEL_CHECK("row_statistics");
}

// ---------------------------------------------------------------------------------------------
// Radix select.

template <class T> struct KeyOf;
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };

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

template <class T, class K>
__device__ K abs_key(T v) {
  K bits;
  memcpy(&bits, &v, sizeof(K));
  return bits & ~(K(1) << (sizeof(K) * 8 - 1));
}

template <class K>
__global__ void select_init(SelectState<K>* state, unsigned long long* hist, Ranks ranks) {
  for (int i = threadIdx.x; i < ranks.count * kBins; i += blockDim.x) hist[i] = 0;
  if (threadIdx.x < ranks.count) state[threadIdx.x] = {K(0), ranks.value[threadIdx.x]};
}

// hist (count, 256): digit (key >> shift) & 255 of every key that matches state[k].prefix above
// bit shift + 8.
template <class T, class K>
__global__ void select_histogram(const T* __restrict__ x, int64_t n,
                                 const SelectState<K>* __restrict__ state,
                                 unsigned long long* __restrict__ hist, int count, int shift) {
  __shared__ unsigned int local[kMaxRanks][kBins];  // per-block counts, per distinct prefix
  const int top = shift + 8;
  const K high = top >= static_cast<int>(sizeof(K) * 8) ? K(0) : ~((K(1) << top) - 1);
  // Ranks whose prefixes agree so far (all of them in the first pass; usually the median pair
  // and the top ranks later) share one histogram: distinct[u] is the u-th distinct prefix and
  // slot_of[k] the histogram of rank k.
  K distinct[kMaxRanks];
  int slot_of[kMaxRanks], unique = 0;
  for (int k = 0; k < count; ++k) {
    const K p = state[k].prefix & high;
    int u = 0;
    while (u < unique && distinct[u] != p) ++u;
    if (u == unique) distinct[unique++] = p;
    slot_of[k] = u;
  }
  for (int i = threadIdx.x; i < unique * kBins; i += blockDim.x) local[i / kBins][i % kBins] = 0;
  __syncthreads();
  // Every lane runs the same number of iterations (the warp stays converged for the match):
  // lanes whose digit is equal add once through their lowest lane (warp-aggregated atomics;
  // most keys share the few exponent digits, so plain atomics would serialise on one bin).
  // Warps where no lane matches a prefix skip it (most keys, after the first pass).
  const int lane = threadIdx.x % 32;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t base = blockIdx.x * static_cast<int64_t>(blockDim.x); base < n; base += stride) {
    const int64_t i = base + threadIdx.x;
    const K key = i < n ? abs_key<T, K>(x[i]) : K(0);
    const unsigned digit = static_cast<unsigned>((key >> shift) & K(kBins - 1));
    for (int u = 0; u < unique; ++u) {
      const bool counted = i < n && (key & high) == distinct[u];
      if (!__any_sync(0xffffffffu, counted)) continue;
      const unsigned slot = counted ? digit : kBins;  // kBins: not counted for this prefix
      const unsigned peers = __match_any_sync(0xffffffffu, slot);
      if (counted && lane == __ffs(peers) - 1) atomicAdd(&local[u][digit], __popc(peers));
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < count * kBins; i += blockDim.x) {
    const unsigned c = local[slot_of[i / kBins]][i % kBins];
    if (c) atomicAdd(&hist[i], static_cast<unsigned long long>(c));
  }
}

// One thread per rank: the bin of the remaining rank; prefix extended by it; histogram cleared.
template <class K>
__global__ void select_step(SelectState<K>* state, unsigned long long* hist, int count,
                            int shift) {
  const int k = threadIdx.x;
  if (k >= count) return;
  unsigned long long* h = hist + k * kBins;  // (256)
  unsigned long long before = 0;
  int bin = 0;
  for (; bin < kBins - 1; ++bin) {
    if (before + h[bin] > state[k].remaining) break;
    before += h[bin];
  }
  state[k].remaining -= before;
  state[k].prefix |= K(bin) << shift;
  for (int b = 0; b < kBins; ++b) h[b] = 0;
}

template <class T, class K>
__global__ void select_write(const SelectState<K>* state, T* out, int count) {
  const int k = threadIdx.x;
  if (k >= count) return;
  T v;
  memcpy(&v, &state[k].prefix, sizeof(K));
  out[k] = v;
}

template <class T>
void abs_order_statistics_typed(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out) {
  using K = typename KeyOf<T>::type;
  const int count = static_cast<int>(ranks.size());
  Ranks r{};
  r.count = count;
  for (int k = 0; k < count; ++k) r.value[k] = static_cast<unsigned long long>(ranks[k]);
  // Workspace: state (count) then hist (count, 256), as one byte buffer on the stream's pool.
  const int64_t state_bytes = kMaxRanks * static_cast<int64_t>(sizeof(SelectState<K>));
  const int64_t bytes = state_bytes + count * kBins * 8;
  Tensor workspace = Tensor::empty({(bytes + 3) / 4}, DType::I32, x.device());  // bytes / 4
  auto* state = static_cast<SelectState<K>*>(workspace.raw_data());
  auto* hist = reinterpret_cast<unsigned long long*>(static_cast<char*>(workspace.raw_data()) +
                                                     state_bytes);
  select_init<K><<<1, 256, 0, stream()>>>(state, hist, r);
  SINKLAB_KERNEL_CHECK("abs_order_statistics init");
  const int64_t n = x.numel();
  const unsigned blocks = std::min<unsigned>(blocks_for(n, 256), 132u * 8u);
  for (int shift = static_cast<int>(sizeof(K) * 8) - 8; shift >= 0; shift -= 8) {
    select_histogram<T, K><<<blocks, 256, 0, stream()>>>(x.data<T>(), n, state, hist, count,
                                                         shift);
    SINKLAB_KERNEL_CHECK("abs_order_statistics histogram");
    select_step<K><<<1, 32, 0, stream()>>>(state, hist, count, shift);
    SINKLAB_KERNEL_CHECK("abs_order_statistics step");
  }
  select_write<T, K><<<1, 32, 0, stream()>>>(state, out.data<T>(), count);
  SINKLAB_KERNEL_CHECK("abs_order_statistics write");
}

void abs_order_statistics_cuda(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out) {
  SINKLAB_CHECK(ranks.size() <= static_cast<size_t>(kMaxRanks), ShapeError,
                "abs_order_statistics: " << ranks.size() << " ranks in one call on "
                                         << x.device().str() << " (at most " << kMaxRanks << ")",
                "split the ranks over several calls");
  if (x.dtype() == DType::F32)
    abs_order_statistics_typed<float>(x, ranks, out);
  else
    abs_order_statistics_typed<double>(x, ranks, out);
}

}  // namespace

void install_statistics_kernels() {
  ops::row_statistics_kernels.cuda_forward = row_statistics_cuda;
  ops::abs_order_statistics_kernels.cuda_forward = abs_order_statistics_cuda;
}

}  // namespace sinklab::cuda
