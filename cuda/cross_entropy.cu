// CUDA twin of ops/cpu/cross_entropy: fused softmax cross-entropy over the vocabulary, never
// materialising probabilities (see ops/cross_entropy.h). Logits are stored as f32, f64 or bf16
// (the bf16 logits of linear(..., LinearOutput::kOperandDType) under Precision::BF16); the
// per-row math runs in the accumulation type A (f32 for f32 and bf16, f64 for f64), lse and the
// loss are stored as A, and the mean over rows is f64. The gradient is stored like the logits.
//
// Forward: (1) one block of 256 threads per row: each thread keeps an online (max, sum) over its
// strided share of the vocabulary, the block merges them in a fixed tree; thread 0 writes lse[r]
// and the row's loss lse - logits[r, target] (0 for an ignored row) to an f64 buffer (N), and
// flags an out-of-range target (atomicMin of the row index: only the error report uses atomics);
// (2) one block sums the row losses and counts the counted rows in a fixed order and writes the
// mean. Deterministic. After (2) the flag is read back once (a stream synchronisation) and a bad
// target is a ValueError naming the op, the value, its row and V; while the stream is being
// captured into a CUDA graph the read-back is skipped (the bad row then just counts 0 loss).
//
// Backward: (1) one block counts the counted rows and writes g / count (f64, 0 when none);
// (2) one block per row writes (exp(logits - lse) - onehot) * g / count, zeros on ignored rows.
//
// Fused (ops::fused_cross_entropy): (1) as the backward's with g = 1, then one kernel whose
// blocks take rows in turn: the row's online (max, sum) as above, then its gradient for g = 1.
// Where a row fits a block's shared memory (GPT-2's bf16 row of 100 KB: two blocks an SM), the
// first pass copies it there and the second reads it there (ce_fused_rows_staged: the logits
// read from memory once); otherwise one 1024-thread block per SM reads the row a second time,
// from L2 (ce_fused_rows). The backward then multiplies by g in place, and returns at once where
// g is 1 (read on the device). The gradient may be written over the logits themselves
// (ops::CrossEntropyLogits::kOverwritten): a row is read whole, and x[target] read, before a
// thread writes the row's gradient, so the fused kernels do not declare the two __restrict__.
//
// Rows are read and written in 16-byte packs (8 bf16, 4 f32 or 2 f64 per thread and step) when
// V is a multiple of the pack and the buffers are 16-byte aligned; element by element otherwise.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/dispatch.h"
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "cuda/storage_types.cuh"
#include "ops/cross_entropy.h"

namespace sinklab::cuda {

namespace {

constexpr int kRowThreads = 256;     // threads per row block (power of two)
constexpr int kReduceThreads = 1024;  // threads of the single-block reductions (power of two)
constexpr unsigned kMaxRowBlocks = 65535u * 16u;  // grid-stride over rows beyond this

// expf: about ten instructions around one MUFU.EX2. exp2f of x * log2(e) (two) cut the staged
// pass's time by 14% under ncu but moved LLaMA-152M's tokens/s within the A/B's spread, and
// moves the last bits against the CPU's exp (docs/PERFORMANCE.md, thirty-first session).
__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }
__device__ __forceinline__ float dev_log(float x) { return logf(x); }
__device__ __forceinline__ double dev_log(double x) { return log(x); }

// Merges the online softmax state (m2, s2) into (m, s): s is the sum of exp(x - m).
template <class A>
__device__ __forceinline__ void merge(A& m, A& s, A m2, A s2) {
  const A ninf = -static_cast<A>(INFINITY);
  // With a maximum of -inf a side holds only -inf (s = 0) or also a NaN (s = NaN): adding its s
  // keeps the NaN, as the CPU reference does.
  if (m2 == ninf) {
    s += s2;
    return;
  }
  if (m == ninf) {
    m = m2;
    s += s2;
    return;
  }
  if (m2 > m) {
    s = s * dev_exp(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * dev_exp(m2 - m);
  }
}

// Adds the values x[0..n) to the online state (m, s): the maximum first, then one exp each.
// -inf values add nothing; a NaN propagates into s.
template <class A>
__device__ __forceinline__ void accumulate_values(A& m, A& s, const A* x, int n) {
  const A ninf = -static_cast<A>(INFINITY);
  A local = ninf;
  for (int i = 0; i < n; ++i)
    if (x[i] > local) local = x[i];
  if (local > m) {
    // With m = -inf, s is 0 or NaN (a NaN seen before): scaling by exp(-inf) = 0 keeps either.
    s *= dev_exp(m - local);
    m = local;
  }
  for (int i = 0; i < n; ++i)
    if (x[i] != ninf) s += dev_exp(x[i] - m);
}

// The log-sum-exp from every thread's online (m, s) over its share of a row: the block merges
// them in a fixed tree in sh_m / sh_s (kThreads each). Every thread gets the result; the caller
// synchronises before sh_m / sh_s are used again.
template <int kThreads, class A>
__device__ __forceinline__ A block_lse(A m, A s, A* sh_m, A* sh_s) {
  sh_m[threadIdx.x] = m;
  sh_s[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      A mm = sh_m[threadIdx.x], ss = sh_s[threadIdx.x];
      merge(mm, ss, sh_m[threadIdx.x + stride], sh_s[threadIdx.x + stride]);
      sh_m[threadIdx.x] = mm;
      sh_s[threadIdx.x] = ss;
    }
    __syncthreads();
  }
  return sh_m[0] + dev_log(sh_s[0]);
}

// The log-sum-exp of row x (V) over a block of kThreads threads: each thread keeps an online
// (max, sum) over its strided share of the row (16-byte packs when `packed`), then the block
// merges them in a fixed tree in sh_m / sh_s (kThreads each). Every thread gets the result; the
// caller synchronises before sh_m / sh_s are used again.
template <int kThreads, class S>
__device__ __forceinline__ typename AccumulateIn<S>::type row_lse(
    const S* x, int64_t V, bool packed, typename AccumulateIn<S>::type* sh_m,
    typename AccumulateIn<S>::type* sh_s) {
  using A = typename AccumulateIn<S>::type;
  constexpr int kPack = RowPack<S>::kCount;
  A m = -static_cast<A>(INFINITY), s = A(0);
  if (packed) {
    const RowPack<S>* xp = reinterpret_cast<const RowPack<S>*>(x);  // (V / kPack)
    for (int64_t c = threadIdx.x; c < V / kPack; c += kThreads) {
      const RowPack<S> p = xp[c];
      A values[kPack];
      for (int i = 0; i < kPack; ++i) values[i] = to_acc(p.v[i]);
      accumulate_values(m, s, values, kPack);
    }
  } else {
    for (int64_t v = threadIdx.x; v < V; v += kThreads) {
      const A value = to_acc(x[v]);
      accumulate_values(m, s, &value, 1);
    }
  }
  return block_lse<kThreads>(m, s, sh_m, sh_s);
}

// Thread 0 of the row's block: lse[r], and the row's loss lse - x[target] (0 for an ignored row);
// an out-of-range target is flagged in bad_row (atomicMin of the row index).
template <class S, class A>
__device__ __forceinline__ void write_row_loss(const S* x, int64_t r, int64_t V, int32_t target,
                                               int32_t ignore_index, A row_lse, A* lse,
                                               double* row_loss, int* bad_row) {
  if (threadIdx.x != 0) return;
  lse[r] = row_lse;
  double loss = 0.0;
  if (target != ignore_index) {
    if (target >= 0 && target < V)
      loss = static_cast<double>(row_lse) - static_cast<double>(to_acc(x[target]));
    else
      atomicMin(bad_row, static_cast<int>(r));
  }
  row_loss[r] = loss;
}

template <class S>
__global__ void __launch_bounds__(kRowThreads)
    ce_forward_rows(const S* __restrict__ logits, const int32_t* __restrict__ targets, int64_t N,
                    int64_t V, int32_t ignore_index, bool packed,
                    typename AccumulateIn<S>::type* __restrict__ lse,
                    double* __restrict__ row_loss, int* __restrict__ bad_row) {
  using A = typename AccumulateIn<S>::type;
  __shared__ A sh_m[kRowThreads];  // (threads) partial maxima
  __shared__ A sh_s[kRowThreads];  // (threads) partial sums of exp(x - max)
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {  // uniform per block
    const S* x = logits + r * V;  // (V)
    const A lse_r = row_lse<kRowThreads>(x, V, packed, sh_m, sh_s);
    write_row_loss(x, r, V, targets[r], ignore_index, lse_r, lse, row_loss, bad_row);
    __syncthreads();  // sh_m / sh_s are reused by the next row
  }
}

// One block: loss = sum(row_loss) / count in f64, fixed order (strided partials, then a tree).
template <class A>
__global__ void __launch_bounds__(kReduceThreads)
    ce_forward_mean(const double* __restrict__ row_loss, const int32_t* __restrict__ targets,
                    int64_t N, int32_t ignore_index, A* __restrict__ loss) {
  __shared__ double sh_sum[kReduceThreads];      // (threads)
  __shared__ long long sh_count[kReduceThreads];  // (threads)
  double sum = 0.0;
  long long count = 0;
  for (int64_t r = threadIdx.x; r < N; r += kReduceThreads) {
    sum += row_loss[r];
    count += targets[r] != ignore_index;
  }
  sh_sum[threadIdx.x] = sum;
  sh_count[threadIdx.x] = count;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      sh_sum[threadIdx.x] += sh_sum[threadIdx.x + stride];
      sh_count[threadIdx.x] += sh_count[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0)
    loss[0] = static_cast<A>(sh_count[0] > 0 ? sh_sum[0] / static_cast<double>(sh_count[0]) : 0.0);
}

// One block: weight[0] = g / count (f64), 0 when no row counts.
template <class A>
__global__ void __launch_bounds__(kReduceThreads)
    ce_backward_weight(const int32_t* __restrict__ targets, int64_t N, int32_t ignore_index,
                       const A* __restrict__ grad_loss, double* __restrict__ weight) {
  __shared__ long long sh_count[kReduceThreads];  // (threads)
  long long count = 0;
  for (int64_t r = threadIdx.x; r < N; r += kReduceThreads) count += targets[r] != ignore_index;
  sh_count[threadIdx.x] = count;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) sh_count[threadIdx.x] += sh_count[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    weight[0] = sh_count[0] > 0
                    ? static_cast<double>(grad_loss[0]) / static_cast<double>(sh_count[0])
                    : 0.0;
}

// d loss / d x_v of one logit (stored as S) of a counted row: softmax recomputed from the row's
// lse, minus the one-hot target, times the row weight w (g / count).
template <class S, class A>
__device__ __forceinline__ S ce_grad_value(S xv, int64_t v, int32_t target, A row_lse, A w) {
  const A p = dev_exp(to_acc(xv) - row_lse);
  return from_acc<S>((p - (v == target ? A(1) : A(0))) * w);
}

// gr (V) = the gradient of row x (V) over a block of kThreads threads (16-byte packs when
// `packed`): ce_grad_value for a counted row, zeros for an ignored one.
template <int kThreads, class S, class A>
__device__ __forceinline__ void write_row_grad(const S* x, S* gr, int64_t V, bool packed,
                                               int32_t target, bool ignored, A row_lse, A w) {
  constexpr int kPack = RowPack<S>::kCount;
  auto grad_at = [&](int64_t v, S xv) -> S {
    return ignored ? from_acc<S>(A(0)) : ce_grad_value<S, A>(xv, v, target, row_lse, w);
  };
  if (packed) {
    const RowPack<S>* xp = reinterpret_cast<const RowPack<S>*>(x);  // (V / kPack)
    RowPack<S>* gp = reinterpret_cast<RowPack<S>*>(gr);             // (V / kPack)
    for (int64_t c = threadIdx.x; c < V / kPack; c += kThreads) {
      const RowPack<S> in = xp[c];
      RowPack<S> out;
      for (int i = 0; i < kPack; ++i) out.v[i] = grad_at(c * kPack + i, in.v[i]);
      gp[c] = out;
    }
  } else {
    for (int64_t v = threadIdx.x; v < V; v += kThreads) gr[v] = grad_at(v, x[v]);
  }
}

template <class S>
__global__ void __launch_bounds__(kRowThreads)
    ce_backward_rows(const S* __restrict__ logits, const int32_t* __restrict__ targets, int64_t N,
                     int64_t V, int32_t ignore_index, bool packed,
                     const typename AccumulateIn<S>::type* __restrict__ lse,
                     const double* __restrict__ weight, S* __restrict__ grad) {
  using A = typename AccumulateIn<S>::type;
  const A w = static_cast<A>(weight[0]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int32_t target = targets[r];
    const bool ignored = target == ignore_index;
    const A lse_r = ignored ? A(0) : lse[r];
    write_row_grad<kRowThreads>(logits + r * V, grad + r * V, V, packed, target, ignored, lse_r,
                                w);
  }
}

constexpr int kFusedThreads = 1024;  // the fused kernel's block (power of two)

// The forward's rows and their gradient for weight[0] (1 / count) in one kernel: per row, the
// (max, sum) reduction as in ce_forward_rows but over 1024 threads (its own fixed tree: lse may
// differ from ce_forward_rows' in the last bits), lse and the row loss, then
// the gradient written from a second read of the row. Grid-stride over rows.
template <class S>
__global__ void __launch_bounds__(kFusedThreads)
    ce_fused_rows(const S* logits, const int32_t* __restrict__ targets, int64_t N,
                  int64_t V, int32_t ignore_index, bool packed,
                  const double* __restrict__ weight,
                  typename AccumulateIn<S>::type* __restrict__ lse,
                  double* __restrict__ row_loss, int* __restrict__ bad_row,
                  S* grad) {
  using A = typename AccumulateIn<S>::type;
  __shared__ A sh_m[kFusedThreads];  // (threads) partial maxima
  __shared__ A sh_s[kFusedThreads];  // (threads) partial sums of exp(x - max)
  const A w = static_cast<A>(weight[0]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {  // uniform per block
    const S* x = logits + r * V;  // (V)
    const A lse_r = row_lse<kFusedThreads>(x, V, packed, sh_m, sh_s);
    const int32_t target = targets[r];
    write_row_loss(x, r, V, target, ignore_index, lse_r, lse, row_loss, bad_row);
    __syncthreads();  // x[target] is read before a gradient may be written over it (in place)
    write_row_grad<kFusedThreads>(x, grad + r * V, V, packed, target, target == ignore_index,
                                  lse_r, w);
    __syncthreads();  // sh_m / sh_s are reused by the next row
  }
}

constexpr int kStagedThreads = 512;  // the staged kernel's block (power of two)
constexpr int kStagedBatch = 4;      // packs a thread loads before it uses the first

// The fused kernel with each row staged in shared memory (dynamic, V elements of S): the
// (max, sum) pass reads the row from memory once, kStagedBatch packs a thread in flight, and
// copies it into shared memory; the gradient pass reads it there instead of from L2. Blocks of
// 512 threads, two on an SM where two rows fit (GPT-2's bf16 row is 100 KB), so that one block
// streams its row while the other merges its sums. A thread sums its packs in the strided order
// of row_lse<kStagedThreads>, and the tree is block_lse's: deterministic. Grid-stride over rows.
template <class S>
__global__ void __launch_bounds__(kStagedThreads, 2)  // two blocks an SM: 64 registers a thread
    ce_fused_rows_staged(const S* logits, const int32_t* __restrict__ targets,
                         int64_t N, int64_t V, int32_t ignore_index, bool packed,
                         const double* __restrict__ weight,
                         typename AccumulateIn<S>::type* __restrict__ lse,
                         double* __restrict__ row_loss, int* __restrict__ bad_row,
                         S* grad) {
  using A = typename AccumulateIn<S>::type;
  constexpr int kPack = RowPack<S>::kCount;
  extern __shared__ uint4 staged_row[];  // (V) the row, as S
  S* row = reinterpret_cast<S*>(staged_row);
  __shared__ A sh_m[kStagedThreads];  // (threads) partial maxima
  __shared__ A sh_s[kStagedThreads];  // (threads) partial sums of exp(x - max)
  const A w = static_cast<A>(weight[0]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {  // uniform per block
    const S* x = logits + r * V;  // (V)
    A m = -static_cast<A>(INFINITY), s = A(0);
    if (packed) {
      const RowPack<S>* xp = reinterpret_cast<const RowPack<S>*>(x);  // (V / kPack)
      RowPack<S>* sp = reinterpret_cast<RowPack<S>*>(row);            // (V / kPack)
      const int64_t packs = V / kPack;
      for (int64_t c0 = threadIdx.x; c0 < packs; c0 += kStagedThreads * kStagedBatch) {
        RowPack<S> p[kStagedBatch];
#pragma unroll
        for (int b = 0; b < kStagedBatch; ++b) {
          const int64_t c = c0 + b * kStagedThreads;
          if (c < packs) p[b] = xp[c];
        }
#pragma unroll
        for (int b = 0; b < kStagedBatch; ++b) {
          const int64_t c = c0 + b * kStagedThreads;
          if (c >= packs) break;
          sp[c] = p[b];
          A values[kPack];
          for (int i = 0; i < kPack; ++i) values[i] = to_acc(p[b].v[i]);
          accumulate_values(m, s, values, kPack);
        }
      }
    } else {
      for (int64_t v = threadIdx.x; v < V; v += kStagedThreads) {
        const S xv = x[v];
        row[v] = xv;
        const A value = to_acc(xv);
        accumulate_values(m, s, &value, 1);
      }
    }
    const A lse_r = block_lse<kStagedThreads>(m, s, sh_m, sh_s);  // its syncs publish the row
    const int32_t target = targets[r];
    write_row_loss(row, r, V, target, ignore_index, lse_r, lse, row_loss, bad_row);
    write_row_grad<kStagedThreads>(row, grad + r * V, V, packed, target, target == ignore_index,
                                   lse_r, w);
    __syncthreads();  // the row's stage and sh_m / sh_s are reused by the next row
  }
}

// Blocks of ce_fused_rows_staged for rows of V elements of S on this device (resident ones, at
// most two an SM), or 0 where a row does not fit a block's shared memory.
template <class S>
unsigned staged_blocks(int64_t V, int64_t N) {
  const size_t bytes = static_cast<size_t>(V) * sizeof(S);
  constexpr size_t kStatic = 2 * kStagedThreads * sizeof(typename AccumulateIn<S>::type);
  // Opted into the most the device allows, once (the process's one device).
  static const size_t most = [] {
    const int limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    const size_t dynamic = static_cast<size_t>(limit) > kStatic ? limit - kStatic : 0;
    SINKLAB_CUDA_CHECK(cudaFuncSetAttribute(ce_fused_rows_staged<S>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(dynamic)));
    return dynamic;
  }();
  if (bytes > most) return 0;
  int per_sm = 0;
  SINKLAB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, ce_fused_rows_staged<S>, kStagedThreads, bytes));
  if (per_sm < 1) return 0;
  const int64_t resident =
      static_cast<int64_t>(std::min(per_sm, 2)) * device_attribute(cudaDevAttrMultiProcessorCount);
  return static_cast<unsigned>(std::min<int64_t>(N, resident));
}

// grad (n) *= g[0] in place, unless g[0] is 1 (then every block returns at once).
template <class S>
__global__ void ce_scale_grad(S* __restrict__ grad, int64_t n,
                              const typename AccumulateIn<S>::type* __restrict__ g) {
  using A = typename AccumulateIn<S>::type;
  const A scale = g[0];
  if (scale == A(1)) return;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad[i] = from_acc<S>(to_acc(grad[i]) * scale);
}

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>(std::min<int64_t>(N, kMaxRowBlocks));
}

bool stream_is_capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  SINKLAB_CUDA_CHECK(cudaStreamIsCapturing(stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

void cross_entropy_forward_cuda(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                                Tensor& lse, Tensor& loss, Tensor* grad_logits) {
  const char* op = "cross_entropy";
  const int64_t N = logits.size(0), V = logits.size(1);
  SINKLAB_CHECK(N < INT_MAX, ShapeError,
                op << " (cuda): logits (" << N << ", " << V << ") have too many rows",
                "split the batch: the CUDA kernel indexes rows with 32-bit integers");
  const int32_t* pt = targets.data<int32_t>();  // (N)
  Tensor row_loss = Tensor::empty({std::max<int64_t>(N, 1)}, DType::F64, logits.device());  // (N)
  Tensor bad_row = Tensor::full({1}, static_cast<double>(INT_MAX), DType::I32,
                                logits.device());  // (1) first row with a bad target, or INT_MAX
  dispatch_storage(logits.dtype(), op, [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const S* px = static_cast<const S*>(logits.raw_data());  // (N, V)
    if (N > 0 && grad_logits) {  // the gradient for g = 1 in the same pass
      S* pg = static_cast<S*>(grad_logits->raw_data());  // (N, V)
      const Tensor one = Tensor::full({1}, 1.0, lse.dtype(), logits.device());  // (1) g = 1
      Tensor weight = Tensor::empty({1}, DType::F64, logits.device());  // (1) 1 / count
      ce_backward_weight<A><<<1, kReduceThreads, 0, stream()>>>(pt, N, ignore_index,
                                                                one.data<A>(),
                                                                weight.data<double>());
      SINKLAB_KERNEL_CHECK(op);
      const bool packed = row_packed<S>(V, {px, pg});
      if (const unsigned staged = staged_blocks<S>(V, N); staged > 0) {  // the row in shared memory
        ce_fused_rows_staged<S><<<staged, kStagedThreads, static_cast<size_t>(V) * sizeof(S),
                                  stream()>>>(px, pt, N, V, ignore_index, packed,
                                              weight.data<double>(), lse.data<A>(),
                                              row_loss.data<double>(), bad_row.data<int32_t>(), pg);
      } else {  // a row beyond a block's shared memory: its second read from L2
        const unsigned blocks = static_cast<unsigned>(
            std::min<int64_t>(N, device_attribute(cudaDevAttrMultiProcessorCount)));
        ce_fused_rows<S><<<blocks, kFusedThreads, 0, stream()>>>(
            px, pt, N, V, ignore_index, packed, weight.data<double>(), lse.data<A>(),
            row_loss.data<double>(), bad_row.data<int32_t>(), pg);
      }
      SINKLAB_KERNEL_CHECK(op);
    } else if (N > 0) {
      ce_forward_rows<S><<<row_blocks(N), kRowThreads, 0, stream()>>>(
          px, pt, N, V, ignore_index, row_packed<S>(V, {px}), lse.data<A>(),
          row_loss.data<double>(), bad_row.data<int32_t>());
      SINKLAB_KERNEL_CHECK(op);
    }
    ce_forward_mean<A><<<1, kReduceThreads, 0, stream()>>>(row_loss.data<double>(), pt, N,
                                                            ignore_index, loss.data<A>());
    SINKLAB_KERNEL_CHECK(op);
  });
  if (N == 0 || stream_is_capturing()) return;
  int32_t bad = INT_MAX;
  SINKLAB_CUDA_CHECK(cudaMemcpyAsync(&bad, bad_row.data<int32_t>(), sizeof(int32_t),
                                     cudaMemcpyDeviceToHost, stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (bad == INT_MAX) return;
  int32_t target = 0;
  SINKLAB_CUDA_CHECK(cudaMemcpyAsync(&target, pt + bad, sizeof(int32_t), cudaMemcpyDeviceToHost,
                                     stream()));
  SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
  SINKLAB_FAIL(ValueError,
               op << ": target " << target << " at row " << bad << " of logits (" << N << ", "
                  << V << ") is outside [0, V) for V = " << V << " and is not ignore_index "
                  << ignore_index,
               "targets must be class indices 0 <= target < V, or ignore_index");
}

void cross_entropy_backward_cuda(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                                 const Tensor& lse, const Tensor& grad_loss,
                                 Tensor& grad_logits, bool precomputed) {
  const char* op = "cross_entropy backward";
  const int64_t N = logits.size(0), V = logits.size(1);
  if (N == 0) return;
  if (precomputed) {  // the forward's gradient for g = 1, times g
    dispatch_storage(logits.dtype(), op, [&](auto zero) {
      using S = decltype(zero);
      using A = typename AccumulateIn<S>::type;
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(
          blocks_for(N * V), 16 * device_attribute(cudaDevAttrMultiProcessorCount)));
      ce_scale_grad<S><<<blocks, 256, 0, stream()>>>(
          static_cast<S*>(grad_logits.raw_data()), N * V, grad_loss.data<A>());
      SINKLAB_KERNEL_CHECK(op);
    });
    return;
  }
  Tensor weight = Tensor::empty({1}, DType::F64, logits.device());  // (1) g / count
  dispatch_storage(logits.dtype(), op, [&](auto zero) {
    using S = decltype(zero);
    using A = typename AccumulateIn<S>::type;
    const S* px = static_cast<const S*>(logits.raw_data());  // (N, V)
    S* pg = static_cast<S*>(grad_logits.raw_data());         // (N, V)
    ce_backward_weight<A><<<1, kReduceThreads, 0, stream()>>>(
        targets.data<int32_t>(), N, ignore_index, grad_loss.data<A>(), weight.data<double>());
    SINKLAB_KERNEL_CHECK(op);
    ce_backward_rows<S><<<row_blocks(N), kRowThreads, 0, stream()>>>(
        px, targets.data<int32_t>(), N, V, ignore_index, row_packed<S>(V, {px, pg}), lse.data<A>(),
        weight.data<double>(), pg);
    SINKLAB_KERNEL_CHECK(op);
  });
}

}  // namespace

void install_cross_entropy_kernels() {
  ops::cross_entropy_kernels.cuda_forward = cross_entropy_forward_cuda;
  ops::cross_entropy_kernels.cuda_backward = cross_entropy_backward_cuda;
}

}  // namespace sinklab::cuda
