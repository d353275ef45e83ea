// CUDA twin of ops/cpu/cross_entropy: fused softmax cross-entropy over the vocabulary, never
// materialising probabilities (see ops/cross_entropy.h). f32 and f64; the per-row math is in the
// tensor's type (f32 for f32, f64 for f64), the mean over rows in f64.
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
#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/dispatch.h"
#include "cuda/runtime.h"
#include "ops/cross_entropy.h"

namespace sinklab::cuda {

namespace {

constexpr int kRowThreads = 256;     // threads per row block (power of two)
constexpr int kReduceThreads = 1024;  // threads of the single-block reductions (power of two)
constexpr unsigned kMaxRowBlocks = 65535u * 16u;  // grid-stride over rows beyond this

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }
__device__ __forceinline__ float dev_log(float x) { return logf(x); }
__device__ __forceinline__ double dev_log(double x) { return log(x); }

// Merges the online softmax state (m2, s2) into (m, s): s is the sum of exp(x - m).
template <class T>
__device__ __forceinline__ void merge(T& m, T& s, T m2, T s2) {
  const T ninf = -static_cast<T>(INFINITY);
  if (m2 == ninf) return;  // nothing on the other side
  if (m == ninf) {
    m = m2;
    s = s2;
    return;
  }
  if (m2 > m) {
    s = s * dev_exp(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * dev_exp(m2 - m);
  }
}

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    ce_forward_rows(const T* __restrict__ logits, const int32_t* __restrict__ targets, int64_t N,
                    int64_t V, int32_t ignore_index, T* __restrict__ lse,
                    double* __restrict__ row_loss, int* __restrict__ bad_row) {
  __shared__ T sh_m[kRowThreads];  // (threads) partial maxima
  __shared__ T sh_s[kRowThreads];  // (threads) partial sums of exp(x - max)
  const T ninf = -static_cast<T>(INFINITY);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {  // uniform per block
    const T* x = logits + r * V;  // (V)
    T m = ninf, s = T(0);
    for (int64_t v = threadIdx.x; v < V; v += kRowThreads) {
      const T xv = x[v];
      if (xv > m) {
        s = s * dev_exp(m - xv) + T(1);  // m = -inf: 0 * 0 + 1
        m = xv;
      } else if (xv != ninf) {
        s += dev_exp(xv - m);  // NaN logits propagate into s
      }
    }
    sh_m[threadIdx.x] = m;
    sh_s[threadIdx.x] = s;
    __syncthreads();
    for (int stride = kRowThreads / 2; stride > 0; stride >>= 1) {
      if (threadIdx.x < stride) {
        T mm = sh_m[threadIdx.x], ss = sh_s[threadIdx.x];
        merge(mm, ss, sh_m[threadIdx.x + stride], sh_s[threadIdx.x + stride]);
        sh_m[threadIdx.x] = mm;
        sh_s[threadIdx.x] = ss;
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      const T row_lse = sh_m[0] + dev_log(sh_s[0]);
      lse[r] = row_lse;
      const int32_t target = targets[r];
      double loss = 0.0;
      if (target != ignore_index) {
        if (target >= 0 && target < V)
          loss = static_cast<double>(row_lse) - static_cast<double>(x[target]);
        else
          atomicMin(bad_row, static_cast<int>(r));
      }
      row_loss[r] = loss;
    }
    __syncthreads();  // sh_m / sh_s are reused by the next row
  }
}

// One block: loss = sum(row_loss) / count in f64, fixed order (strided partials, then a tree).
template <class T>
__global__ void __launch_bounds__(kReduceThreads)
    ce_forward_mean(const double* __restrict__ row_loss, const int32_t* __restrict__ targets,
                    int64_t N, int32_t ignore_index, T* __restrict__ loss) {
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
    loss[0] = static_cast<T>(sh_count[0] > 0 ? sh_sum[0] / static_cast<double>(sh_count[0]) : 0.0);
}

// One block: weight[0] = g / count (f64), 0 when no row counts.
template <class T>
__global__ void __launch_bounds__(kReduceThreads)
    ce_backward_weight(const int32_t* __restrict__ targets, int64_t N, int32_t ignore_index,
                       const T* __restrict__ grad_loss, double* __restrict__ weight) {
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

template <class T>
__global__ void __launch_bounds__(kRowThreads)
    ce_backward_rows(const T* __restrict__ logits, const int32_t* __restrict__ targets, int64_t N,
                     int64_t V, int32_t ignore_index, const T* __restrict__ lse,
                     const double* __restrict__ weight, T* __restrict__ grad) {
  const T w = static_cast<T>(weight[0]);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    T* gr = grad + r * V;  // (V)
    const int32_t target = targets[r];
    if (target == ignore_index) {
      for (int64_t v = threadIdx.x; v < V; v += kRowThreads) gr[v] = T(0);
      continue;
    }
    const T* x = logits + r * V;  // (V)
    const T row_lse = lse[r];
    for (int64_t v = threadIdx.x; v < V; v += kRowThreads) {
      const T p = dev_exp(x[v] - row_lse);  // softmax, recomputed
      gr[v] = (p - (v == target ? T(1) : T(0))) * w;
    }
  }
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
                                Tensor& lse, Tensor& loss) {
  const char* op = "cross_entropy";
  const int64_t N = logits.size(0), V = logits.size(1);
  SINKLAB_CHECK(N < INT_MAX, ShapeError,
                op << " (cuda): logits (" << N << ", " << V << ") have too many rows",
                "split the batch: the CUDA kernel indexes rows with 32-bit integers");
  const int32_t* pt = targets.data<int32_t>();  // (N)
  Tensor row_loss = Tensor::empty({std::max<int64_t>(N, 1)}, DType::F64, logits.device());  // (N)
  Tensor bad_row = Tensor::full({1}, static_cast<double>(INT_MAX), DType::I32,
                                logits.device());  // (1) first row with a bad target, or INT_MAX
  dispatch_float(logits.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    if (N > 0) {
      ce_forward_rows<T><<<row_blocks(N), kRowThreads, 0, stream()>>>(
          logits.data<T>(), pt, N, V, ignore_index, lse.data<T>(), row_loss.data<double>(),
          bad_row.data<int32_t>());
      SINKLAB_KERNEL_CHECK(op);
    }
    ce_forward_mean<T><<<1, kReduceThreads, 0, stream()>>>(row_loss.data<double>(), pt, N,
                                                            ignore_index, loss.data<T>());
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
                                 Tensor& grad_logits) {
  const char* op = "cross_entropy backward";
  const int64_t N = logits.size(0), V = logits.size(1);
  if (N == 0) return;
  Tensor weight = Tensor::empty({1}, DType::F64, logits.device());  // (1) g / count
  dispatch_float(logits.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    ce_backward_weight<T><<<1, kReduceThreads, 0, stream()>>>(
        targets.data<int32_t>(), N, ignore_index, grad_loss.data<T>(), weight.data<double>());
    SINKLAB_KERNEL_CHECK(op);
    ce_backward_rows<T><<<row_blocks(N), kRowThreads, 0, stream()>>>(
        logits.data<T>(), targets.data<int32_t>(), N, V, ignore_index, lse.data<T>(),
        weight.data<double>(), grad_logits.data<T>());
    SINKLAB_KERNEL_CHECK(op);
  });
}

}  // namespace

void install_cross_entropy_kernels() {
  ops::cross_entropy_kernels.cuda_forward = cross_entropy_forward_cuda;
  ops::cross_entropy_kernels.cuda_backward = cross_entropy_backward_cuda;
}

}  // namespace sinklab::cuda
