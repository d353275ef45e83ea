#include "core/tensor.h"

#include <cstring>
#include <sstream>

namespace sinklab {

namespace {

double load_as_double(const void* p, DType t) {
  switch (t) {
    case DType::F32: return *static_cast<const float*>(p);
    case DType::F64: return *static_cast<const double*>(p);
    case DType::BF16: return bf16_to_float(*static_cast<const bf16*>(p));
    case DType::I32: return *static_cast<const int32_t*>(p);
  }
  return 0;
}

void store_from_double(void* p, DType t, double v) {
  switch (t) {
    case DType::F32: *static_cast<float*>(p) = static_cast<float>(v); break;
    case DType::F64: *static_cast<double*>(p) = v; break;
    case DType::BF16: *static_cast<bf16*>(p) = float_to_bf16(static_cast<float>(v)); break;
    case DType::I32: *static_cast<int32_t*>(p) = static_cast<int32_t>(v); break;
  }
}

// Calls fn(element_offset) for every element of (shape, strides) in row-major order.
template <class Fn>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, Fn fn) {
  const int64_t n = numel_of(shape);
  if (n == 0) return;
  const size_t rank = shape.size();
  std::vector<int64_t> index(rank, 0);
  int64_t off = base;
  for (int64_t i = 0; i < n; ++i) {
    fn(off);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    SINKLAB_CHECK(d >= 0, ShapeError, "negative dimension in shape " << shape_str(shape),
                  "dimensions must be >= 0");
  auto impl = std::make_shared<TensorImpl>();
  const int64_t bytes =
      checked_mul(numel_of(shape), static_cast<int64_t>(dtype_size(dtype)), shape);
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(bytes), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

}  // namespace

TensorImpl& Tensor::impl() const {
  SINKLAB_CHECK(impl_ != nullptr, ValueError, "use of an undefined tensor",
                "the tensor was default-constructed or never computed");
  return *impl_;
}

void Tensor::check_dtype(DType expected) const {
  SINKLAB_CHECK(dtype() == expected, DTypeError,
                "tensor " << str() << " accessed as " << dtype_name(expected),
                "convert with to_dtype() first");
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, device));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(0.0);
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype) {
  SINKLAB_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), ShapeError,
                "from_doubles: " << values.size() << " values for shape " << shape_str(shape),
                "give exactly numel(shape) values");
  Tensor t = empty(shape, dtype);
  char* p = static_cast<char*>(t.raw_data());
  const size_t es = dtype_size(dtype);
  for (size_t i = 0; i < values.size(); ++i) store_from_double(p + i * es, dtype, values[i]);
  return t;
}

Tensor Tensor::from_ints(const std::vector<int32_t>& values, const Shape& shape) {
  SINKLAB_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape), ShapeError,
                "from_ints: " << values.size() << " values for shape " << shape_str(shape),
                "give exactly numel(shape) values");
  Tensor t = empty(shape, DType::I32);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, const Shape& shape, int64_t offset,
                       DType dtype) {
  SINKLAB_CHECK((offset + numel_of(shape)) * static_cast<int64_t>(dtype_size(dtype)) <=
                    static_cast<int64_t>(storage->bytes()),
                ShapeError,
                "view_of: shape " << shape_str(shape) << " at offset " << offset
                                  << " does not fit a storage of " << storage->bytes() << " bytes",
                "check the flat buffer layout");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(impl);
}

int64_t Tensor::size(int d) const { return shape()[normalize_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = dim(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  std::ostringstream out;
  out << dtype_name(dtype()) << shape_str(shape()) << " "
      << (has_data() ? device().str() : std::string("(no data)"));
  if (!is_contiguous()) out << " non-contiguous";
  return out.str();
}

void* Tensor::raw_data() {
  return static_cast<char*>(impl().storage->data()) + offset() * dtype_size(dtype());
}
const void* Tensor::raw_data() const {
  return static_cast<const char*>(impl().storage->data()) + offset() * dtype_size(dtype());
}

std::vector<double> Tensor::to_doubles() const {
  Tensor host = device().is_cpu() ? *this : to_device(Device::cpu());
  std::vector<double> out;
  out.reserve(numel());
  const char* base = static_cast<const char*>(host.storage()->data());
  const size_t es = dtype_size(dtype());
  if (host.is_contiguous() && (dtype() == DType::F32 || dtype() == DType::F64)) {
    // Fast path (metrics fetch millions of values per step): one dtype switch, a tight loop.
    const int64_t n = numel();
    out.resize(n);
    if (dtype() == DType::F32) {
      const float* p = reinterpret_cast<const float*>(base) + host.offset();
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
    } else {
      const double* p = reinterpret_cast<const double*>(base) + host.offset();
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
    }
    return out;
  }
  for_each_offset(host.shape(), host.strides(), host.offset(),
                  [&](int64_t off) { out.push_back(load_as_double(base + off * es, dtype())); });
  return out;
}

double Tensor::item() const {
  SINKLAB_CHECK(numel() == 1, ShapeError, "item() on tensor " << str(),
                "item() needs exactly one element");
  return to_doubles()[0];
}

Tensor Tensor::reshape_view(const Shape& new_shape) const {
  Shape shape_out = new_shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape_out.size(); ++i) {
    if (shape_out[i] == -1) {
      SINKLAB_CHECK(infer < 0, ShapeError, "reshape: more than one -1 in " << shape_str(new_shape),
                    "at most one dimension may be inferred");
      infer = static_cast<int>(i);
    } else {
      known *= shape_out[i];
    }
  }
  if (infer >= 0) shape_out[infer] = known == 0 ? 0 : numel() / known;
  SINKLAB_CHECK(numel_of(shape_out) == numel(), ShapeError,
                "reshape: cannot view " << str() << " as " << shape_str(new_shape),
                "the number of elements must stay the same");
  SINKLAB_CHECK(is_contiguous(), ShapeError, "reshape: " << str() << " is not contiguous",
                "call contiguous() first");
  auto v = std::make_shared<TensorImpl>(*impl_);
  v->autograd = nullptr;
  v->shape = shape_out;
  v->strides = contiguous_strides(shape_out);
  return Tensor(v);
}

Tensor Tensor::transpose_view(int d0, int d1) const {
  int a = normalize_dim(d0, dim(), "transpose"), b = normalize_dim(d1, dim(), "transpose");
  auto v = std::make_shared<TensorImpl>(*impl_);
  v->autograd = nullptr;
  std::swap(v->shape[a], v->shape[b]);
  std::swap(v->strides[a], v->strides[b]);
  return Tensor(v);
}

Tensor Tensor::narrow_view(int d, int64_t start, int64_t length) const {
  int k = normalize_dim(d, dim(), "narrow");
  SINKLAB_CHECK(start >= 0 && length >= 0 && start + length <= shape()[k], ShapeError,
                "narrow: [" << start << ", " << start + length << ") is outside dim " << k
                            << " of " << str(),
                "keep start + length <= size(dim)");
  auto v = std::make_shared<TensorImpl>(*impl_);
  v->autograd = nullptr;
  v->offset += start * v->strides[k];
  v->shape[k] = length;
  return Tensor(v);
}

Tensor Tensor::select_view(int d, int64_t index) const {
  int k = normalize_dim(d, dim(), "select");
  SINKLAB_CHECK(index >= 0 && index < shape()[k], ShapeError,
                "select: index " << index << " is outside dim " << k << " of " << str(),
                "pick 0 <= index < size(dim)");
  auto v = std::make_shared<TensorImpl>(*impl_);
  v->autograd = nullptr;
  v->offset += index * v->strides[k];
  v->shape.erase(v->shape.begin() + k);
  v->strides.erase(v->strides.begin() + k);
  return Tensor(v);
}

void Tensor::copy_from(const Tensor& src) {
  SINKLAB_CHECK(src.shape() == shape(), ShapeError,
                "copy_from: source " << src.str() << " into " << str(), "shapes must match");
  SINKLAB_CHECK(src.dtype() == dtype(), DTypeError,
                "copy_from: source " << src.str() << " into " << str(), "convert dtype first");
  const size_t bytes = numel() * dtype_size(dtype());
  if (device().is_cpu() && src.device().is_cpu()) {
    if (is_contiguous() && src.is_contiguous()) {
      if (bytes) std::memmove(raw_data(), src.raw_data(), bytes);
      return;
    }
    // Runs of the last dimension move as one memcpy each when both sides store them
    // contiguously (e.g. q, k, v cut out of a (B, T, 3C) qkv); otherwise one element per run.
    const bool rows = dim() >= 1 && strides().back() == 1 && src.strides().back() == 1;
    const Shape run_shape(shape().begin(), shape().end() - (rows ? 1 : 0));
    const Shape dst_strides(strides().begin(), strides().begin() + run_shape.size());
    const Shape src_strides(src.strides().begin(), src.strides().begin() + run_shape.size());
    const size_t es = dtype_size(dtype());
    const size_t run_bytes = (rows ? static_cast<size_t>(shape().back()) : 1) * es;
    std::vector<int64_t> dst_offsets;
    dst_offsets.reserve(numel_of(run_shape));
    for_each_offset(run_shape, dst_strides, offset(), [&](int64_t o) { dst_offsets.push_back(o); });
    char* dst = static_cast<char*>(storage()->data());
    const char* s = static_cast<const char*>(src.storage()->data());
    size_t i = 0;
    for_each_offset(run_shape, src_strides, src.offset(), [&](int64_t o) {
      std::memcpy(dst + dst_offsets[i++] * es, s + o * es, run_bytes);
    });
    return;
  }
  if (device().is_cuda() && src.device() == device() &&
      !(is_contiguous() && src.is_contiguous())) {
    SINKLAB_CHECK(cuda_strided_copy() != nullptr, DeviceError,
                  "strided copy on " << device().str() << " without a CUDA backend",
                  "rebuild with CUDA");
    if (numel()) cuda_strided_copy()(*this, src);
    return;
  }
  SINKLAB_CHECK(is_contiguous() && src.is_contiguous(), DeviceError,
                "copy_from between devices needs contiguous tensors: " << src.str() << " -> "
                                                                      << str(),
                "call copy_contiguous() on the source device first");
  SINKLAB_CHECK(cuda_backend_available(), DeviceError,
                "copy_from " << src.device().str() << " -> " << device().str()
                             << " without a CUDA backend",
                "rebuild with CUDA or keep tensors on the CPU");
  int kind = src.device().is_cpu() ? 0 : (device().is_cpu() ? 1 : 2);
  int dev = device().is_cuda() ? device().index : src.device().index;
  if (bytes) device_memory_hooks().copy(raw_data(), src.raw_data(), bytes, kind, dev);
}

Tensor Tensor::copy_contiguous() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to_dtype(DType target) const {
  if (target == dtype()) return *this;
  if (device().is_cuda()) {  // float to float on the device (f32, f64, bf16)
    const Tensor src = contiguous_or_self();
    Tensor out = empty(shape(), target, device());
    const auto convert = device_memory_hooks().convert;
    SINKLAB_CHECK(convert != nullptr &&
                      convert(out.raw_data(), static_cast<int>(target), src.raw_data(),
                              static_cast<int>(dtype()), numel(), device().index),
                  DeviceError,
                  "to_dtype " << str() << " -> " << dtype_name(target) << " on the GPU",
                  "the GPU converts between f32, f64 and bf16; move other dtypes to the CPU");
    return out;
  }
  std::vector<double> values = to_doubles();
  return from_doubles(values, shape(), target);
}

Tensor Tensor::to_device(Device target) const {
  if (target == device()) return *this;
  Tensor src = contiguous_or_self();
  Tensor out = empty(shape(), dtype(), target);
  out.copy_from(src);
  return out;
}

void Tensor::fill(double value) {
  if (device().is_cpu()) {
    const size_t es = dtype_size(dtype());
    char* base = static_cast<char*>(storage()->data());
    for_each_offset(shape(), strides(), offset(),
                    [&](int64_t o) { store_from_double(base + o * es, dtype(), value); });
    return;
  }
  if (is_contiguous() && device_memory_hooks().fill) {
    device_memory_hooks().fill(raw_data(), numel(), static_cast<int>(dtype()), value,
                               device().index);
    return;
  }
  Tensor host = full(shape(), value, dtype());
  copy_from(host);
}

AutogradMeta& Tensor::autograd_meta() {
  TensorImpl& i = impl();
  if (!i.autograd) i.autograd = std::make_shared<AutogradMeta>();
  return *i.autograd;
}

bool Tensor::requires_grad() const { return impl().autograd && impl().autograd->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  SINKLAB_CHECK(!on || is_floating(dtype()), DTypeError,
                "requires_grad on " << str(), "only floating-point tensors take gradients");
  autograd_meta().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  if (!impl().autograd || !impl().autograd->grad) return Tensor();
  return Tensor(impl().autograd->grad);
}

void Tensor::set_grad(const Tensor& g) { autograd_meta().grad = g.impl_ptr(); }

std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  return impl().autograd ? impl().autograd->grad_fn : nullptr;
}

void Tensor::set_grad_fn(std::shared_ptr<autograd::Node> fn) {
  autograd_meta().grad_fn = std::move(fn);
}

Tensor Tensor::detach() const {
  auto v = std::make_shared<TensorImpl>(impl());
  v->autograd = nullptr;
  return Tensor(v);
}

Tensor Tensor::without_data() const {
  auto v = std::make_shared<TensorImpl>(impl());  // the same autograd state (a shared pointer)
  v->storage = nullptr;
  return Tensor(v);
}

// ---- argument checks used by every op ----

void check_defined(const Tensor& t, const char* op, const char* arg) {
  SINKLAB_CHECK(t.defined(), ValueError, op << ": argument '" << arg << "' is undefined",
                "pass a computed tensor");
}

void check_dtype(const Tensor& t, DType dtype, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SINKLAB_CHECK(t.dtype() == dtype, DTypeError,
                op << ": '" << arg << "' is " << t.str() << ", expected dtype "
                   << dtype_name(dtype),
                "convert with to_dtype()");
}

void check_float(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SINKLAB_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, DTypeError,
                op << ": '" << arg << "' is " << t.str() << ", expected f32 or f64",
                "CPU kernels compute in f32/f64: convert bf16 with to_dtype(DType::F32)");
}

void check_float_storage(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SINKLAB_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 ||
                    (t.dtype() == DType::BF16 && t.device().is_cuda()),
                DTypeError,
                op << ": '" << arg << "' is " << t.str()
                   << ", expected f32 or f64 (or bf16 on a GPU)",
                "convert with to_dtype(DType::F32)");
}

void check_contiguous(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SINKLAB_CHECK(t.is_contiguous(), ShapeError,
                op << ": '" << arg << "' " << t.str() << " must be contiguous",
                "call ops::contiguous() on it first");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  SINKLAB_CHECK(a.device() == b.device(), DeviceError,
                op << ": inputs on different devices: " << a.str() << " and " << b.str(),
                "move both to one device with to_device()");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  SINKLAB_CHECK(a.dtype() == b.dtype(), DTypeError,
                op << ": inputs of different dtypes: " << a.str() << " and " << b.str(),
                "convert one with to_dtype()");
}

void check_rank(const Tensor& t, size_t rank, const char* op, const char* arg) {
  SINKLAB_CHECK(t.dim() == rank, ShapeError,
                op << ": '" << arg << "' " << t.str() << " must have rank " << rank,
                "reshape the input");
}

void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg) {
  SINKLAB_CHECK(t.shape() == expected, ShapeError,
                op << ": '" << arg << "' is " << t.str() << ", expected shape "
                   << shape_str(expected),
                "check the sizes passed to the op");
}

}  // namespace sinklab
