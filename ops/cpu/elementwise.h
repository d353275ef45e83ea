// CPU reference kernels for broadcasting add/mul and scale. Contiguous inputs; `b` broadcasts
// over the leading dims of `a` (b.numel() divides a.numel(), b's shape is a's trailing shape).
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

void add_forward(const Tensor& a, const Tensor& b, Tensor& out);
void mul_forward(const Tensor& a, const Tensor& b, Tensor& out);
void scale_forward(const Tensor& a, double s, Tensor& out);
// grad_b[j] = sum over leading rows of grad[r, j] (or of grad * a when `times` is given).
void sum_leading(const Tensor& grad, const Tensor* times, Tensor& grad_b);

}  // namespace sinklab::cpu
