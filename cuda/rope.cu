// CUDA twin of ops/cpu/rope: rotary position embedding, rotate_half convention (see ops/rope.h).
// One thread per rotated pair (x[i], x[i + HS/2]) of one (b, t, h) row; the angle, its cosine and
// sine and the rotation are computed in double, as on the CPU, then rounded to the tensor's type.
// Backward is the same rotation by -angle. f32 and f64; x and out contiguous (B, T, NH, HS).
#include <cstdint>

#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/rope.h"

namespace sinklab::cuda {

namespace {

template <class T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t pairs,
                            int64_t Tn, int64_t NH, int64_t HS, double theta,
                            int64_t position_offset, double sign) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= pairs) return;
  const int64_t half = HS / 2;
  const int64_t i = idx % half;
  const int64_t row = idx / half;         // (b * T + t) * NH + h
  const int64_t t = (row / NH) % Tn;
  const double freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(HS));
  const double angle = static_cast<double>(t + position_offset) * freq;
  double s, c;
  sincos(angle, &s, &c);
  s *= sign;
  const T* xr = x + row * HS;  // (HS) one head of one position
  T* orow = out + row * HS;    // (HS)
  const double lo = static_cast<double>(xr[i]), hi = static_cast<double>(xr[i + half]);
  orow[i] = static_cast<T>(lo * c - hi * s);
  orow[i + half] = static_cast<T>(hi * c + lo * s);
}

void rotate(const Tensor& x_in, double theta, int64_t position_offset, double sign, Tensor& out,
            const char* op) {
  const Tensor x = x_in.contiguous_or_self();  // (B, T, NH, HS)
  const int64_t Tn = x.size(1), NH = x.size(2), HS = x.size(3);
  const int64_t pairs = x.numel() / 2;  // (B, T, NH, HS/2) rotations
  if (pairs == 0) return;
  switch (x.dtype()) {
    case DType::F32:
      rope_kernel<<<blocks_for(pairs), 256, 0, stream()>>>(x.data<float>(), out.data<float>(),
                                                           pairs, Tn, NH, HS, theta,
                                                           position_offset, sign);
      break;
    case DType::F64:
      rope_kernel<<<blocks_for(pairs), 256, 0, stream()>>>(x.data<double>(), out.data<double>(),
                                                           pairs, Tn, NH, HS, theta,
                                                           position_offset, sign);
      break;
    default:
      SINKLAB_FAIL(DTypeError, op << " (cuda): no " << dtype_name(x.dtype()) << " kernel",
                   "CUDA rope runs in f32 or f64: convert with to_dtype(DType::F32)");
  }
  SINKLAB_KERNEL_CHECK(op);
}

void rope_forward_cuda(const Tensor& x, double theta, int64_t position_offset, Tensor& out) {
  rotate(x, theta, position_offset, +1.0, out, "rope");
}

void rope_backward_cuda(const Tensor& grad, double theta, int64_t position_offset, Tensor& out) {
  rotate(grad, theta, position_offset, -1.0, out, "rope backward");
}

}  // namespace

void install_rope_kernels() {
  ops::rope_kernels.cuda_forward = rope_forward_cuda;
  ops::rope_kernels.cuda_backward = rope_backward_cuda;
}

}  // namespace sinklab::cuda
