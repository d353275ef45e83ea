// Tensor: a view (shape, strides, offset, dtype) onto shared Storage on one device.
//
// Copying a Tensor copies the handle: both share storage and autograd state. The view methods
// below (reshape_view, transpose_view, narrow_view, copy_contiguous, to_dtype, to_device) are raw:
// they record no autograd graph. Differentiable code uses ops::reshape, ops::transpose, ...
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/device.h"
#include "core/shape.h"
#include "core/storage.h"

namespace sinklab {

namespace autograd {
class Node;
}

// Autograd state of one tensor. Data only: the behaviour lives in autograd/.
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<struct TensorImpl> grad;        // accumulated gradient of a leaf (see autograd/)
  std::shared_ptr<autograd::Node> grad_fn;        // op that produced this tensor (non-leaf)
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories (contiguous) ---
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  // Values converted to `dtype` (rounded for bf16, truncated for i32); created on the CPU.
  static Tensor from_doubles(const std::vector<double>& values, const Shape& shape,
                             DType dtype = DType::F32);
  static Tensor from_ints(const std::vector<int32_t>& values, const Shape& shape);
  // A view onto existing storage (used for flat parameter buffers).
  static Tensor view_of(std::shared_ptr<Storage> storage, const Shape& shape, int64_t offset,
                        DType dtype);

  // --- metadata ---
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  size_t dim() const { return impl().shape.size(); }
  int64_t size(int d) const;  // negative d counts from the end
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  std::string str() const;  // "f32(2, 3) cpu"
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool same_storage(const Tensor& other) const { return storage() == other.storage(); }

  // --- data access (contiguous-or-not pointer to the first element) ---
  void* raw_data();
  const void* raw_data() const;
  template <class T> T* data() {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw_data());
  }
  template <class T> const T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<const T*>(raw_data());
  }
  // Host copy of all elements in logical (row-major) order, converted to double.
  std::vector<double> to_doubles() const;
  double item() const;  // the single element of a one-element tensor

  // --- raw views and copies (no autograd) ---
  Tensor reshape_view(const Shape& shape) const;  // requires contiguous
  Tensor transpose_view(int d0, int d1) const;
  Tensor narrow_view(int dim, int64_t start, int64_t length) const;
  Tensor select_view(int dim, int64_t index) const;  // index `index` of dim; that dim dropped
  Tensor copy_contiguous() const;  // always a fresh contiguous copy
  Tensor contiguous_or_self() const { return is_contiguous() ? *this : copy_contiguous(); }
  Tensor to_dtype(DType dtype) const;
  Tensor to_device(Device device) const;
  // Copies src's elements into this tensor (same shape); both on CPU, or device hooks are used.
  void copy_from(const Tensor& src);
  void fill(double value);

  // --- autograd state (behaviour in autograd/) ---
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);
  Tensor grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);
  std::shared_ptr<autograd::Node> grad_fn() const;
  void set_grad_fn(std::shared_ptr<autograd::Node> fn);
  bool is_leaf() const { return grad_fn() == nullptr; }
  AutogradMeta& autograd_meta();  // created on first use
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  // A handle sharing this tensor's data but with no autograd history.
  Tensor detach() const;
  // A handle with this tensor's shape, dtype and autograd state (the same requires_grad and
  // grad_fn) but no data: what a graph node keeps of an input whose values its backward does not
  // read (autograd::set_keep_inputs). Its data, device and copies are not to be asked for.
  Tensor without_data() const;
  bool has_data() const { return defined() && impl().storage != nullptr; }

 private:
  TensorImpl& impl() const;
  void check_dtype(DType expected) const;
  std::shared_ptr<TensorImpl> impl_;
};

// Throws a ShapeError/DTypeError/DeviceError naming `op` and the argument when a check fails.
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_dtype(const Tensor& t, DType dtype, const char* op, const char* arg);
void check_float(const Tensor& t, const char* op, const char* arg);  // f32 or f64
// f32 or f64, or bf16 on a CUDA device (a storage format the GPU kernels widen to f32).
void check_float_storage(const Tensor& t, const char* op, const char* arg);
void check_contiguous(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_rank(const Tensor& t, size_t rank, const char* op, const char* arg);
void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg);

}  // namespace sinklab
