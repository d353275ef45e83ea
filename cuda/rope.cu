// CUDA twin of ops/cpu/rope: rotary position embedding, rotate_half convention (see ops/rope.h),
// of rope's x (B, T, NH, HS) and of the q and k parts of rope_qkv's packed qkv (B, T, 3C). Both
// are rows of heads, one row per position (b, t): rope's rows hold its NH heads (NH * HS apart),
// rope_qkv's hold q's NH heads then k's (3C apart; the v part after them is copied unchanged by
// one 2-D copy). A thread rotates one pack of consecutive pairs (x[i], x[i + HS/2]),
// i in [i0, i0 + P), in every head of one position, P = 16 bytes of elements (4 f32, 2 f64,
// 8 bf16): each half moves in one 16-byte access when HS/2 divides into packs and the buffers
// are aligned, element by element otherwise. Consecutive threads take a row's packs, then the
// next row's, so a warp's loads and stores cover whole halves of heads. Each pair's cosine and
// sine come from a table per (T, HS, theta, position_offset) made on the device once and kept
// for the process: the angle and its cosine and sine computed in double, as on the CPU, then
// rounded to the rotation's type. The rotation is in double for f32 and f64 (then rounded to the
// type, as on the CPU), in f32 for bf16 (read bf16, cos and sin rounded to f32, the result
// rounded to nearest even when written). Backward is the same rotation by -angle (the sines
// negated). x and out contiguous.
#include <algorithm>
#include <bit>
#include <compare>
#include <cstdint>
#include <map>
#include <mutex>

#include "core/dtype.h"
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "cuda/storage_types.cuh"
#include "ops/rope.h"

namespace sinklab::cuda {

namespace {

constexpr int kThreads = 256;

// The rotated heads: `rows` positions (b, t) of `heads` heads of HS values each, a position's
// heads side by side from element row * stride (of the input and of the output).
struct RopeRows {
  int64_t rows, T, heads, HS, stride;
};

// The rotation's arithmetic for storage type S: double for f32 and f64, f32 for bf16.
template <class S> struct RotateIn { using type = double; };
template <> struct RotateIn<__nv_bfloat16> { using type = float; };

// The angle table of one (T, HS, theta, position_offset) in R: cos (T, HS/2) then sin (T, HS/2)
// in one buffer, cos[t * HS/2 + i] = cos((t + position_offset) * theta^(-2i/HS)) rounded to R.
template <class R>
struct AngleTable {
  const R* cos;  // (T, HS/2)
  const R* sin;  // (T, HS/2)
};

// One thread per (t, i): the angle, its cosine and sine in double, as the CPU computes them.
template <class R>
__global__ void angle_table_kernel(R* __restrict__ table, int64_t T, int64_t HS, double theta,
                                   int64_t position_offset) {
  const int64_t half = HS / 2, n = T * half;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;  // t * HS/2 + i
  if (p >= n) return;
  const int64_t t = p / half, i = p - t * half;
  const double freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(HS));
  const double angle = static_cast<double>(t + position_offset) * freq;
  double sd = 0, cd = 1;
  sincos(angle, &sd, &cd);
  table[p] = static_cast<R>(cd);      // cos (T, HS/2)
  table[n + p] = static_cast<R>(sd);  // sin (T, HS/2)
}

// The angle table of (T, HS, theta, position_offset) in R, made on the first call with them and
// kept (at most kMaxTables per R; all are released, once the device is done with them, when a
// new one finds the cache full). T * HS/2 > 0. The first call with a new key waits for the
// stream (the table is then ready for either stream, the compute stream or the side stream).
// One process drives one device from one host thread (as everywhere in cuda/): the mutex keeps
// the map consistent, not a returned table alive; a full cache stalls the device once.
template <class R>
AngleTable<R> angle_table(int64_t T, int64_t HS, double theta, int64_t position_offset) {
  struct Key {
    int64_t T, HS;
    uint64_t theta;  // its bits
    int64_t position_offset;
    auto operator<=>(const Key&) const = default;
  };
  constexpr size_t kMaxTables = 32;
  static std::mutex mutex;
  static std::map<Key, R*> tables;  // each (2, T, HS/2) on the device: cos, then sin
  const int64_t n = T * (HS / 2);
  const Key key{T, HS, std::bit_cast<uint64_t>(theta), position_offset};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = tables.find(key);
  if (it == tables.end()) {
    if (tables.size() >= kMaxTables) {
      // Queued kernels of either stream may still read a table: wait for the whole device.
      SINKLAB_CUDA_CHECK(cudaDeviceSynchronize());
      for (auto& entry : tables) SINKLAB_CUDA_CHECK(cudaFreeAsync(entry.second, stream()));
      tables.clear();
    }
    R* table = nullptr;  // (2, T, HS/2): cos, sin
    SINKLAB_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&table),
                                       2 * static_cast<size_t>(n) * sizeof(R), stream()));
    angle_table_kernel<R><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        table, T, HS, theta, position_offset);
    SINKLAB_KERNEL_CHECK("rope angle table");
    SINKLAB_CUDA_CHECK(cudaStreamSynchronize(stream()));
    it = tables.emplace(key, table).first;
  }
  return {it->second, it->second + n};
}

// kPer consecutive values of an angle table row from p: RowPack<R> loads when `packed` (p then
// 16-byte aligned), else the first `width` one by one (the rest zero).
template <class R, int kPer>
__device__ __forceinline__ void load_angles(const R* p, int width, bool packed, R (&v)[kPer]) {
  constexpr int kIn = RowPack<R>::kCount;  // values of R in 16 bytes
  static_assert(kPer % kIn == 0, "a pack of angles is whole RowPacks of R");
  if (packed) {
#pragma unroll
    for (int q = 0; q < kPer / kIn; ++q) {
      const RowPack<R> pack = *reinterpret_cast<const RowPack<R>*>(p + q * kIn);
#pragma unroll
      for (int j = 0; j < kIn; ++j) v[q * kIn + j] = pack.v[j];
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) v[j] = j < width ? p[j] : R{0};
}

// Heads a thread rotates at once: their loads are all issued before the first of their stores
// (out may be x, so the compiler could not move a head's loads above the last head's stores).
constexpr int kHeadsAtOnce = 4;

// One thread per (position, pack): p = row * packs + k, packs = the lo packs of a head (HS/2 /
// kPer, rounded up), i0 = k * kPer. The thread reads the pack's cosines and sign * sines from the
// table row of t once and rotates x[i0 ..] with x[i0 + HS/2 ..] of every head of the position,
// kHeadsAtOnce heads at a time. A warp's lanes take consecutive packs of consecutive positions,
// so each head's lo and hi halves are read and written whole (HS * sizeof(S) bytes of a row).
// (One thread per pack of one head had moved 32 bytes a thread, among 64-bit index divisions,
// and read the same cosines once per head: 1.9 TB/s on an H100, 103 us a LLaMA-152M layer.)
// packed: every pack whole (HS/2 a multiple of RowPack<S>::kCount) and 16-byte aligned; then so
// are the table's packs (they start kPer values apart, kPer * sizeof(R) is 16 or 32 bytes).
// Measured against this kernel on an H100 (docs/PERFORMANCE.md, thirty-first session; 100.6 us
// at LLaMA-152M's rope_qkv shape, an in-place copy of the same bytes 76.9): `packed` as a
// template argument +10.5%, two heads at once with three blocks an SM +7.6%, the heads split
// over grid.y in groups of 4 +4.4%, of 2 -3.6%, one thread per (position, head, pack) +2.5%.
template <class S>
__global__ void rope_kernel(const S* x, S* out, RopeRows g,  // out may be x (in place)
                            AngleTable<typename RotateIn<S>::type> table,
                            typename RotateIn<S>::type sign, bool packed) {
  using R = typename RotateIn<S>::type;
  constexpr int kPer = RowPack<S>::kCount;
  const int64_t half = g.HS / 2, packs = (half + kPer - 1) / kPer;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= g.rows * packs) return;
  const int64_t row = p / packs;  // b * T + t
  const int64_t i0 = (p - row * packs) * kPer;
  const int64_t t = row % g.T;
  const int width = static_cast<int>(half - i0 < kPer ? half - i0 : kPer);
  R c[kPer], s[kPer];  // cos and sign * sin of the pack's angles
  load_angles(table.cos + t * half + i0, width, packed, c);
  load_angles(table.sin + t * half + i0, width, packed, s);
#pragma unroll
  for (int j = 0; j < kPer; ++j) s[j] = sign * s[j];  // exact: sign is +-1
  const int64_t first = row * g.stride + i0;  // x[i0] of head 0
  for (int64_t h0 = 0; h0 < g.heads; h0 += kHeadsAtOnce) {
    RowPack<S> lo[kHeadsAtOnce], hi[kHeadsAtOnce];  // x[i0 ..] and x[i0 + HS/2 ..] of h0 + u
#pragma unroll
    for (int u = 0; u < kHeadsAtOnce; ++u) {
      if (h0 + u >= g.heads) break;
      const int64_t at = first + (h0 + u) * g.HS;
      lo[u] = load_pack(x + at, width, packed);
      hi[u] = load_pack(x + at + half, width, packed);
    }
#pragma unroll
    for (int u = 0; u < kHeadsAtOnce; ++u) {
      if (h0 + u >= g.heads) break;
      RowPack<S> out_lo, out_hi;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const R a = static_cast<R>(to_acc(lo[u].v[j])), b = static_cast<R>(to_acc(hi[u].v[j]));
        out_lo.v[j] = from_acc<S>(a * c[j] - b * s[j]);
        out_hi.v[j] = from_acc<S>(b * c[j] + a * s[j]);
      }
      const int64_t at = first + (h0 + u) * g.HS;
      store_pack(out + at, out_lo, width, packed);
      store_pack(out + at + half, out_hi, width, packed);
    }
  }
}

void rotate(const Tensor& x, const RopeRows& g, double theta, int64_t position_offset,
            double sign, Tensor& out, const char* op) {
  dispatch_storage(x.dtype(), op, [&](auto zero) {
    using S = decltype(zero);
    using R = typename RotateIn<S>::type;
    constexpr int kPer = RowPack<S>::kCount;
    const int64_t half = g.HS / 2;
    // (position, pack): the threads
    const int64_t items = g.rows * ((half + kPer - 1) / kPer);
    if (items == 0) return;
    const AngleTable<R> table = angle_table<R>(g.T, g.HS, theta, position_offset);
    const S* px = static_cast<const S*>(x.raw_data());  // (rows, stride): heads first in a row
    S* po = static_cast<S*>(out.raw_data());            // (rows, stride) likewise
    const bool packed = half % kPer == 0 && g.stride % kPer == 0 && aligned16({px, po});
    rope_kernel<S><<<blocks_for(items, kThreads), kThreads, 0, stream()>>>(
        px, po, g, table, static_cast<R>(sign), packed);
    SINKLAB_KERNEL_CHECK(op);
  });
}

// rope: x (B, T, NH, HS), NH heads a position.
void rotate_heads(const Tensor& x_in, double theta, int64_t position_offset, double sign,
                  Tensor& out, const char* op) {
  const Tensor x = x_in.contiguous_or_self();  // (B, T, NH, HS)
  const int64_t NH = x.size(2), HS = x.size(3);
  rotate(x, {x.size(0) * x.size(1), x.size(1), NH, HS, NH * HS}, theta, position_offset, sign,
         out, op);
}

// rope_qkv: qkv (B, T, 3C), q's NH heads then k's at the start of each row, then v (copied,
// unless out is qkv: each thread reads its pair before writing it).
void rotate_qk_copy_v(const Tensor& qkv_in, int64_t n_head, double theta,
                      int64_t position_offset, double sign, Tensor& out, const char* op) {
  const Tensor qkv = qkv_in.contiguous_or_self();  // (B, T, 3C)
  const int64_t rows = qkv.size(0) * qkv.size(1), T = qkv.size(1), C = qkv.size(2) / 3;
  rotate(qkv, {rows, T, 2 * n_head, C / n_head, 3 * C}, theta, position_offset, sign, out, op);
  if (rows == 0 || out.raw_data() == qkv.raw_data()) return;
  const size_t es = dtype_size(qkv.dtype()), row_bytes = 3 * C * es;
  // v: rows of C elements at column 2C, 3C apart in both
  SINKLAB_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(out.raw_data()) + 2 * C * es,
                                       row_bytes,
                                       static_cast<const char*>(qkv.raw_data()) + 2 * C * es,
                                       row_bytes, C * es, rows, cudaMemcpyDeviceToDevice,
                                       stream()));
}

void rope_forward_cuda(const Tensor& x, double theta, int64_t position_offset, Tensor& out) {
  rotate_heads(x, theta, position_offset, +1.0, out, "rope");
}

void rope_backward_cuda(const Tensor& grad, double theta, int64_t position_offset, Tensor& out) {
  rotate_heads(grad, theta, position_offset, -1.0, out, "rope backward");
}

void rope_qkv_forward_cuda(const Tensor& qkv, int64_t n_head, double theta,
                           int64_t position_offset, Tensor& out) {
  rotate_qk_copy_v(qkv, n_head, theta, position_offset, +1.0, out, "rope_qkv");
}

void rope_qkv_backward_cuda(const Tensor& grad, int64_t n_head, double theta,
                            int64_t position_offset, Tensor& out) {
  rotate_qk_copy_v(grad, n_head, theta, position_offset, -1.0, out, "rope_qkv backward");
}

}  // namespace

void install_rope_kernels() {
  ops::rope_kernels.cuda_forward = rope_forward_cuda;
  ops::rope_kernels.cuda_backward = rope_backward_cuda;
  ops::rope_qkv_kernels.cuda_forward = rope_qkv_forward_cuda;
  ops::rope_qkv_kernels.cuda_backward = rope_qkv_backward_cuda;
}

}  // namespace sinklab::cuda
