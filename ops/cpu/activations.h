// CPU reference kernels for gelu, silu, swiglu, swiglu_packed and bias_gelu. Contiguous tensors;
// the math is done in double per element (silu and swiglu share one silu and one
// silu-derivative function; swiglu_packed runs swiglu's per-element maps on the two halves of
// each row, so that it equals swiglu on the halves bit for bit), except bias_gelu's (GPT-2's
// FFN, the hot one): in the dtype, as x sigmoid(2u) with one exp per element, like the CUDA
// kernel.
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
// gate_up (..., 2F): gate | up in each row; out (..., F) = silu(gate) * up.
void swiglu_packed_forward(const Tensor& gate_up, Tensor& out);
// grad (..., F) -> grad_gate_up (..., 2F): swiglu_backward's two gradients side by side per row.
void swiglu_packed_backward(const Tensor& grad, const Tensor& gate_up, Tensor& grad_gate_up);
// x, out (rows, F), bias (F): out = gelu(x + bias), the sum rounded to the dtype first (as a
// product with its bias added would be).
void bias_gelu_forward(const Tensor& x, const Tensor& bias, Tensor& out);
// grad_x = grad * gelu'(x + bias); grad_bias[c] = sum over rows of grad_x[r, c] (in double).
void bias_gelu_backward(const Tensor& grad, const Tensor& x, const Tensor& bias, Tensor& grad_x,
                        Tensor& grad_bias);

}  // namespace sinklab::cpu
