// Pointwise activations (same shape in and out):
//   gelu(x)  = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GPT-2's tanh approximation)
//   silu(x)  = x * sigmoid(x)
//   swiglu(gate, up) = silu(gate) * up, gate and up of one shape (LLaMA FFN: silu(W1 x) * W3 x)
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor gelu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor swiglu(const Tensor& gate, const Tensor& up);

using ActivationForwardFn = void (*)(const Tensor& x, Tensor& out);
using ActivationBackwardFn = void (*)(const Tensor& grad, const Tensor& x, Tensor& grad_x);
using GatedForwardFn = void (*)(const Tensor& gate, const Tensor& up, Tensor& out);
// Fills the gradients whose pointer is non-null.
using GatedBackwardFn = void (*)(const Tensor& grad, const Tensor& gate, const Tensor& up,
                                 Tensor* grad_gate, Tensor* grad_up);
extern OpKernels<ActivationForwardFn, ActivationBackwardFn> gelu_kernels;
extern OpKernels<ActivationForwardFn, ActivationBackwardFn> silu_kernels;
extern OpKernels<GatedForwardFn, GatedBackwardFn> swiglu_kernels;

}  // namespace sinklab::ops
