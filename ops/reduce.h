// Full reductions to a scalar (shape ()).
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

using SumForwardFn = void (*)(const Tensor& x, double factor, Tensor& out);
using SumBackwardFn = void (*)(const Tensor& grad_out, double factor, Tensor& grad_x);
extern OpKernels<SumForwardFn, SumBackwardFn> sum_kernels;  // mean is sum with factor 1/n

}  // namespace sinklab::ops
