// Elementwise arithmetic with broadcasting of `b` over the leading dims of `a`:
// b.shape() must equal a.shape() or a trailing part of it, e.g. a (B, T, C) + b (C).
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, double s);

using BinaryForwardFn = void (*)(const Tensor& a, const Tensor& b, Tensor& out);
using ScaleForwardFn = void (*)(const Tensor& a, double s, Tensor& out);
using SumLeadingFn = void (*)(const Tensor& grad, const Tensor* times, Tensor& grad_b);

// Backward of add/mul reduces over the broadcast dims (sum_leading); scale's backward is scale.
extern OpKernels<BinaryForwardFn, SumLeadingFn> add_kernels;
extern OpKernels<BinaryForwardFn, SumLeadingFn> mul_kernels;
extern OpKernels<ScaleForwardFn, ScaleForwardFn> scale_kernels;

}  // namespace sinklab::ops
