#include "core/tensor_math.h"

#include "core/parallel.h"

namespace sinklab {

namespace {
AddFn g_cuda_add = nullptr;

template <class T>
void add_into_cpu(Tensor& dst, const Tensor& src) {
  T* d = dst.data<T>();
  const T* s = src.data<T>();
  parallel_for(dst.numel(), [&](int64_t i) { d[i] += s[i]; }, 1 << 14);
}
}  // namespace

void install_cuda_add(AddFn fn) { g_cuda_add = fn; }

void add_into(Tensor& dst, const Tensor& src) {
  check_same_device(dst, src, "add_into");
  check_same_dtype(dst, src, "add_into");
  SINKLAB_CHECK(dst.shape() == src.shape(), ShapeError,
                "add_into: " << src.str() << " into " << dst.str(), "shapes must match");
  if (dst.device().is_cuda()) {
    SINKLAB_CHECK(g_cuda_add, DeviceError, "add_into on CUDA without a CUDA backend",
                  "rebuild with CUDA");
    g_cuda_add(dst, src, dst);
    return;
  }
  Tensor s = src.contiguous_or_self();
  if (!dst.is_contiguous()) {  // rare: accumulate through a contiguous temporary
    Tensor tmp = dst.copy_contiguous();
    add_into(tmp, s);
    dst.copy_from(tmp);
    return;
  }
  switch (dst.dtype()) {
    case DType::F32: add_into_cpu<float>(dst, s); break;
    case DType::F64: add_into_cpu<double>(dst, s); break;
    default:
      SINKLAB_FAIL(DTypeError, "add_into: unsupported dtype " << dst.str(),
                   "gradients are f32 or f64 on the CPU");
  }
}

Tensor sum_of(const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "sum_of");
  check_same_dtype(a, b, "sum_of");
  SINKLAB_CHECK(a.shape() == b.shape(), ShapeError, "sum_of: " << a.str() << " + " << b.str(),
                "shapes must match");
  if (!a.device().is_cuda()) {
    Tensor out = a.copy_contiguous();
    add_into(out, b);
    return out;
  }
  SINKLAB_CHECK(g_cuda_add, DeviceError, "sum_of on CUDA without a CUDA backend",
                "rebuild with CUDA");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());  // a's shape
  g_cuda_add(a.contiguous_or_self(), b.contiguous_or_self(), out);
  return out;
}

}  // namespace sinklab
