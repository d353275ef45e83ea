// CUDA twins of ops/cpu/embedding: the row gather (forward, with the id range check done on the
// device) and the deterministic scatter-sum of its gradient (backward, no atomics on values).
// ids i32 (N) contiguous, table (V, C), out / grad (N, C) in flattened form; f32 and f64.
//
// Forward: one warp per token copies table[id, :] (lanes stride over C, coalesced). An id outside
// [0, V) writes a zero row instead of reading out of bounds and lowers a device word to its
// position (integer atomicMin: the result is the first bad position whatever the schedule);
// the launcher reads that word back once after the kernel and throws a ValueError. Under CUDA
// graph capture the read-back is skipped (a captured stream cannot be synchronised).
//
// Backward, host-free and deterministic:
//   1. (id, position) pairs sorted by id with CUB's stable LSD radix sort on the low
//      ceil(log2 V) bits: O(N * passes), passes = ceil(bits / digit bits) (2 for V = 50k);
//      positions of one id stay ascending (stable sort of an ascending iota).
//   2. one block per (table row v, tile of channels): thread 0 finds the segment of v with two
//      binary searches, O(log N); each thread then sums grad[position, c] over the segment in
//      token order (the CPU's order), in double, and writes grad_table[v, c] (0 if v is unused).
// Total O(N * passes + V log N + (N + V) * C). A row used m times costs m sequential (but
// independent, pipelined) loads per thread, so a very hot id is the slowest block.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "cuda/check.h"
#include "core/dispatch.h"
#include "cuda/runtime.h"
#include "ops/embedding.h"

namespace sinklab::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kTokensPerBlock = 8;  // warps per block in the forward
constexpr unsigned long long kNoBadId = ~0ull;

// "(1, 4)": the multi-index of flat element `flat` of a row-major `shape`.
std::string index_str(const Shape& shape, int64_t flat) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_str(index);
}

// ids (N); table (V, C); out (N, C); first_bad (1): lowered to the position of a bad id.
template <class T>
__global__ void embedding_forward_kernel(const int32_t* ids, const T* table, T* out, int64_t N,
                                         int64_t V, int64_t C, unsigned long long* first_bad) {
  const int lane = threadIdx.x % kWarp;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kTokensPerBlock + threadIdx.x / kWarp;
  if (n >= N) return;
  const int64_t id = ids[n];
  T* dst = out + n * C;  // (C)
  if (id < 0 || id >= V) {
    if (lane == 0) atomicMin(first_bad, static_cast<unsigned long long>(n));
    for (int64_t c = lane; c < C; c += kWarp) dst[c] = T(0);
    return;
  }
  const T* src = table + id * C;  // (C)
  for (int64_t c = lane; c < C; c += kWarp) dst[c] = src[c];
}

// positions (N) = 0, 1, ..., N - 1.
__global__ void iota_kernel(int32_t* positions, int64_t N) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < N) positions[i] = static_cast<int32_t>(i);
}

// First k in [0, N) with (keys[k] & mask) >= target, or N; keys sorted by (key & mask).
__device__ int64_t lower_bound_masked(const uint32_t* keys, int64_t N, uint64_t target,
                                      uint32_t mask) {
  int64_t lo = 0, hi = N;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<uint64_t>(keys[mid] & mask) < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Grid (V, channel tiles); block (threads over channels).
// sorted_ids (N) sorted by (id & mask), order (N) the positions in the same order, grad (N, C),
// grad_table (V, C). Keys whose full value is not v (only possible for ids that were never
// validated) are skipped, so they are never summed into a row.
template <class T>
__global__ void embedding_backward_kernel(const uint32_t* sorted_ids, const int32_t* order,
                                          const T* grad, T* grad_table, int64_t N, int64_t C,
                                          uint32_t mask) {
  __shared__ int64_t segment[2];  // [begin, end) of row v in the sorted arrays
  const int64_t v = blockIdx.x;
  if (threadIdx.x == 0) {
    segment[0] = lower_bound_masked(sorted_ids, N, static_cast<uint64_t>(v), mask);
    segment[1] = lower_bound_masked(sorted_ids, N, static_cast<uint64_t>(v) + 1, mask);
  }
  __syncthreads();
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double acc = 0;  // double for f32 too, as the CPU reference (the loop is load-bound)
  for (int64_t k = segment[0]; k < segment[1]; ++k) {
    if (static_cast<int64_t>(sorted_ids[k]) != v) continue;
    acc += static_cast<double>(grad[static_cast<int64_t>(order[k]) * C + c]);
  }
  grad_table[v * C + c] = static_cast<T>(acc);
}

void embedding_forward_cuda(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t N = ids.numel(), V = table.size(0), C = table.size(1);
  if (N == 0) return;
  const int32_t* pid = ids.data<int32_t>();  // (N)
  // (2) i32 = one u64 word: the first bad token position, or kNoBadId.
  Tensor first_bad = Tensor::empty({2}, DType::I32, table.device());
  auto* pbad = static_cast<unsigned long long*>(first_bad.raw_data());
  SINKLAB_CUDA_CHECK(cudaMemsetAsync(pbad, 0xFF, sizeof(unsigned long long), stream()));
  dispatch_float(table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    const unsigned blocks = static_cast<unsigned>((N + kTokensPerBlock - 1) / kTokensPerBlock);
    embedding_forward_kernel<T><<<blocks, kWarp * kTokensPerBlock, 0, stream()>>>(
        pid, table.data<T>() /* (V, C) */, out.data<T>() /* (N, C) */, N, V, C, pbad);
    SINKLAB_KERNEL_CHECK("embedding forward");
  });
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  SINKLAB_CUDA_CHECK(cudaStreamIsCapturing(stream(), &capture));
  if (capture != cudaStreamCaptureStatusNone) return;  // cannot synchronise inside a capture
  unsigned long long bad = kNoBadId;
  SINKLAB_CUDA_CHECK(
      cudaMemcpyAsync(&bad, pbad, sizeof(bad), cudaMemcpyDeviceToHost, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (bad == kNoBadId) return;
  const int64_t position = static_cast<int64_t>(bad);
  int32_t id = 0;
  SINKLAB_CUDA_CHECK(
      cudaMemcpyAsync(&id, pid + position, sizeof(id), cudaMemcpyDeviceToHost, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
  SINKLAB_FAIL(ValueError,
               "embedding: id " << id << " at position " << index_str(ids.shape(), position)
                                << " (flat " << position << ") of ids " << shape_str(ids.shape())
                                << " is outside [0, V) with V = " << V << " (table "
                                << shape_str(table.shape()) << ", on " << table.device().str()
                                << ")",
               "token ids must be below the vocabulary size the table was built for");
}

void embedding_backward_cuda(const Tensor& grad, const Tensor& ids, Tensor& grad_table) {
  const int64_t N = ids.numel(), V = grad_table.size(0), C = grad_table.size(1);
  if (V == 0 || C == 0) return;
  SINKLAB_CHECK(N <= std::numeric_limits<int32_t>::max(), ShapeError,
                "embedding backward (cuda): " << N << " tokens exceed the i32 sort index",
                "split the batch into fewer than 2^31 tokens");
  const Device device = grad_table.device();
  // Sort bits: the smallest `bits` with V <= 2^bits (ids are validated to lie in [0, V)).
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) < V) ++bits;
  const uint32_t mask = bits >= 32 ? 0xffffffffu : ((1u << bits) - 1u);

  Tensor sorted_ids, order;  // (N) each, i32 storage (sorted ids read as u32)
  if (N > 0) {
    Tensor positions = Tensor::empty({N}, DType::I32, device);  // (N) 0 .. N-1
    sorted_ids = Tensor::empty({N}, DType::I32, device);        // (N)
    order = Tensor::empty({N}, DType::I32, device);             // (N)
    iota_kernel<<<blocks_for(N), 256, 0, stream()>>>(positions.data<int32_t>(), N);
    SINKLAB_KERNEL_CHECK("embedding backward (iota)");
    const auto* keys_in = reinterpret_cast<const uint32_t*>(ids.data<int32_t>());
    auto* keys_out = reinterpret_cast<uint32_t*>(sorted_ids.data<int32_t>());
    const int32_t* values_in = positions.data<int32_t>();
    int32_t* values_out = order.data<int32_t>();
    size_t temp_bytes = 0;
    SINKLAB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out,
                                                       values_in, values_out, static_cast<int>(N),
                                                       0, bits, stream()));
    // (ceil(temp_bytes / 4)) i32: CUB's scratch.
    Tensor temp = Tensor::empty({static_cast<int64_t>(temp_bytes / 4 + 1)}, DType::I32, device);
    SINKLAB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, keys_in,
                                                       keys_out, values_in, values_out,
                                                       static_cast<int>(N), 0, bits, stream()));
  }
  const uint32_t* psorted =
      N > 0 ? reinterpret_cast<const uint32_t*>(sorted_ids.data<int32_t>()) : nullptr;  // (N)
  const int32_t* porder = N > 0 ? order.data<int32_t>() : nullptr;                      // (N)

  const int threads = static_cast<int>(std::min<int64_t>(256, (C + kWarp - 1) / kWarp * kWarp));
  const int64_t tiles = (C + threads - 1) / threads;
  SINKLAB_CHECK(V <= std::numeric_limits<int32_t>::max() && tiles <= 65535, ShapeError,
                "embedding backward (cuda): table (" << V << ", " << C << ") is too large",
                "V must be below 2^31 and C below 65535 * 256");
  dispatch_float(grad_table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    embedding_backward_kernel<T>
        <<<dim3(static_cast<unsigned>(V), static_cast<unsigned>(tiles)), threads, 0, stream()>>>(
            psorted, porder, N > 0 ? grad.data<T>() : nullptr /* (N, C) */,
            grad_table.data<T>() /* (V, C) */, N, C, mask);
    SINKLAB_KERNEL_CHECK("embedding backward");
  });
  // positions, sorted_ids, order and temp are released stream-ordered after these kernels.
}

}  // namespace

void install_embedding_kernels() {
  ops::embedding_kernels.cuda_forward = embedding_forward_cuda;
  ops::embedding_kernels.cuda_backward = embedding_backward_cuda;
}

}  // namespace sinklab::cuda
