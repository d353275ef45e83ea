// Shapes and strides (in elements), with the helpers every op needs.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace sinklab {

using Shape = std::vector<int64_t>;

// Element counts and strides are checked: a negative dimension or a product past 2^63 - 1 throws
// a ShapeError naming the shape (instead of wrapping around into a small, overrun buffer).
int64_t numel_of(const Shape& shape);
int64_t checked_mul(int64_t a, int64_t b, const Shape& shape);  // a * b, checked as above
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"
// Product of dims [begin, end).
int64_t dims_product(const Shape& shape, size_t begin, size_t end);
// True when `suffix` equals the trailing dims of `shape` (broadcast over leading dims).
bool is_trailing_suffix(const Shape& shape, const Shape& suffix);
// Resolves a negative dim index; throws ShapeError naming `op` when out of range.
int normalize_dim(int dim, size_t rank, const char* op);

}  // namespace sinklab
