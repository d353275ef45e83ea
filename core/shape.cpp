#include "core/shape.h"

#include "core/error.h"

namespace sinklab {

int64_t numel_of(const Shape& shape) { return dims_product(shape, 0, shape.size()); }

int64_t checked_mul(int64_t a, int64_t b, const Shape& shape) {
  int64_t product = 0;
  SINKLAB_CHECK(a >= 0 && b >= 0, ShapeError, "negative dimension in shape " << shape_str(shape),
                "dimensions must be >= 0");
  SINKLAB_CHECK(!__builtin_mul_overflow(a, b, &product), ShapeError,
                "shape " << shape_str(shape) << " has more elements than a 64-bit count holds",
                "reduce the size that made it (a config key such as model.vocab_size, "
                "model.n_embd or train.batch_size)");
  return product;
}

int64_t dims_product(const Shape& shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) n = checked_mul(n, shape[i], shape);
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s = checked_mul(s, shape[i], shape);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  return out + ")";
}

bool is_trailing_suffix(const Shape& shape, const Shape& suffix) {
  if (suffix.size() > shape.size()) return false;
  size_t off = shape.size() - suffix.size();
  for (size_t i = 0; i < suffix.size(); ++i)
    if (shape[off + i] != suffix[i]) return false;
  return true;
}

int normalize_dim(int dim, size_t rank, const char* op) {
  int r = static_cast<int>(rank);
  int d = dim < 0 ? dim + r : dim;
  SINKLAB_CHECK(d >= 0 && d < r, ShapeError,
                op << ": dim " << dim << " is out of range for a tensor of rank " << r,
                "use a dim in [-rank, rank)");
  return d;
}

}  // namespace sinklab
