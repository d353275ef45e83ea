// CUDA twin of ops/cpu/rope: rotary position embedding, rotate_half convention (see ops/rope.h),
// of rope's x (B, T, NH, HS) and of the q and k parts of rope_qkv's packed qkv (B, T, 3C). Both
// are rows of heads, one row per position (b, t): rope's rows hold its NH heads (NH * HS apart),
// rope_qkv's hold q's NH heads then k's (3C apart; the v part after them is copied unchanged by
// one 2-D copy). A thread rotates one pack of consecutive pairs (x[i], x[i + HS/2]),
// i in [i0, i0 + P), of one position in several of its heads, P = 16 bytes of elements (4 f32,
// 2 f64, 8 bf16): each half moves in one 16-byte access when HS/2 divides into packs and the
// buffers are aligned, element by element otherwise. Each pair's angle, its cosine and sine are
// computed in double, as on the CPU, once per thread for all its heads; the rotation in double
// for f32 and f64 (then rounded to the type, as on the CPU), in f32 for bf16 (read bf16, cos and
// sin rounded to f32, the result rounded to nearest even when written). Backward is the same
// rotation by -angle. x and out contiguous.
#include <algorithm>
#include <cstdint>

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

// Threads enough to fill the GPU (about one resident wave on an H100): the head groups of the
// grid's y dimension grow until the packs times the groups reach it.
constexpr int64_t kTargetThreads = int64_t{1} << 18;

// Grid x: one thread per pack (position, i0), y: head groups. A thread computes its pack's cosines
// and sines once and rotates the pack in heads blockIdx.y, blockIdx.y + gridDim.y, ... of its
// position. packed: every pack whole (HS/2 a multiple of RowPack<S>::kCount) and 16-byte aligned.
template <class S>
__global__ void rope_kernel(const S* __restrict__ x, S* __restrict__ out, RopeRows g,
                            double theta, int64_t position_offset, double sign, bool packed) {
  using R = typename RotateIn<S>::type;
  constexpr int kPer = RowPack<S>::kCount;
  const int64_t half = g.HS / 2, per_row = (half + kPer - 1) / kPer;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= g.rows * per_row) return;
  const int64_t row = p / per_row;  // b * T + t
  const int64_t i0 = (p - row * per_row) * kPer;
  const int64_t t = row % g.T;
  const int width = static_cast<int>(half - i0 < kPer ? half - i0 : kPer);
  R c[kPer], s[kPer];  // cos and sign * sin of the pack's angles
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    double sd = 0, cd = 1;
    if (j < width) {
      const double freq =
          pow(theta, -2.0 * static_cast<double>(i0 + j) / static_cast<double>(g.HS));
      const double angle = static_cast<double>(t + position_offset) * freq;
      sincos(angle, &sd, &cd);
    }
    c[j] = static_cast<R>(cd);
    s[j] = static_cast<R>(sign * sd);
  }
  for (int64_t h = blockIdx.y; h < g.heads; h += gridDim.y) {
    const int64_t at = row * g.stride + h * g.HS + i0;              // x[i0] of head h
    const RowPack<S> lo = load_pack(x + at, width, packed);         // x[i0 ..]
    const RowPack<S> hi = load_pack(x + at + half, width, packed);  // x[i0 + HS/2 ..]
    RowPack<S> out_lo, out_hi;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const R a = static_cast<R>(to_acc(lo.v[j])), b = static_cast<R>(to_acc(hi.v[j]));
      out_lo.v[j] = from_acc<S>(a * c[j] - b * s[j]);
      out_hi.v[j] = from_acc<S>(b * c[j] + a * s[j]);
    }
    store_pack(out + at, out_lo, width, packed);
    store_pack(out + at + half, out_hi, width, packed);
  }
}

void rotate(const Tensor& x, const RopeRows& g, double theta, int64_t position_offset,
            double sign, Tensor& out, const char* op) {
  dispatch_storage(x.dtype(), op, [&](auto zero) {
    using S = decltype(zero);
    constexpr int kPer = RowPack<S>::kCount;
    const int64_t half = g.HS / 2;
    const int64_t packs = g.rows * ((half + kPer - 1) / kPer);  // (position, i0): grid x
    if (packs == 0 || g.heads == 0) return;
    const int64_t groups = std::clamp<int64_t>(kTargetThreads / packs, 1,
                                               std::min<int64_t>(g.heads, 65535));  // grid y
    const S* px = static_cast<const S*>(x.raw_data());  // (rows, stride): heads first in a row
    S* po = static_cast<S*>(out.raw_data());            // (rows, stride) likewise
    const bool packed = half % kPer == 0 && g.stride % kPer == 0 && aligned16({px, po});
    rope_kernel<S><<<dim3(blocks_for(packs, kThreads), static_cast<unsigned>(groups)), kThreads,
                     0, stream()>>>(px, po, g, theta, position_offset, sign, packed);
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

// rope_qkv: qkv (B, T, 3C), q's NH heads then k's at the start of each row, then v (copied).
void rotate_qk_copy_v(const Tensor& qkv_in, int64_t n_head, double theta,
                      int64_t position_offset, double sign, Tensor& out, const char* op) {
  const Tensor qkv = qkv_in.contiguous_or_self();  // (B, T, 3C)
  const int64_t rows = qkv.size(0) * qkv.size(1), T = qkv.size(1), C = qkv.size(2) / 3;
  rotate(qkv, {rows, T, 2 * n_head, C / n_head, 3 * C}, theta, position_offset, sign, out, op);
  if (rows == 0) return;
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
