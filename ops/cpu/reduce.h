// CPU reference kernels for full reductions. Sums accumulate in double, in a fixed order.
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

// out (scalar) = factor * sum(x)
void sum_forward(const Tensor& x, double factor, Tensor& out);
// grad_x[i] = factor * grad_out (scalar)
void sum_backward(const Tensor& grad_out, double factor, Tensor& grad_x);

}  // namespace sinklab::cpu
