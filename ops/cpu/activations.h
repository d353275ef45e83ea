// CPU reference kernels for gelu, silu and swiglu. Contiguous tensors of one shape; the math is
// done in double per element (silu and swiglu share one silu and one silu-derivative function).
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

void gelu_forward(const Tensor& x, Tensor& out);
void gelu_backward(const Tensor& grad, const Tensor& x, Tensor& grad_x);  // grad * gelu'(x)
void silu_forward(const Tensor& x, Tensor& out);
void silu_backward(const Tensor& grad, const Tensor& x, Tensor& grad_x);  // grad * silu'(x)
void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out);
// grad_gate = grad * up * silu'(gate), grad_up = grad * silu(gate); null pointers are skipped.
void swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up, Tensor* grad_gate,
                     Tensor* grad_up);

}  // namespace sinklab::cpu
