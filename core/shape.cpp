#include "core/shape.h"

#include "core/error.h"

namespace sinklab {

int64_t numel_of(const Shape& shape) { return dims_product(shape, 0, shape.size()); }

int64_t dims_product(const Shape& shape, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) n *= shape[i];
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
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
