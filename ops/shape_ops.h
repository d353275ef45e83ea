// Differentiable views and copies: reshape, transpose, narrow, contiguous, dtype conversion.
// reshape/transpose/narrow return views sharing storage; most kernels then need contiguous().
#pragma once
#include "core/tensor.h"

namespace sinklab::ops {

Tensor reshape(const Tensor& x, const Shape& shape);  // a view; copies first if non-contiguous
Tensor transpose(const Tensor& x, int d0, int d1);    // a view
Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length);  // a view
Tensor contiguous(const Tensor& x);                   // x itself when already contiguous
Tensor to_dtype(const Tensor& x, DType dtype);         // gradient converted back

}  // namespace sinklab::ops
