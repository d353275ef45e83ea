// Pointwise activations (same shape in and out):
//   gelu(x)  = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GPT-2's tanh approximation)
//   silu(x)  = x * sigmoid(x)
//   swiglu(gate, up) = silu(gate) * up, gate and up of one shape (LLaMA FFN: silu(W1 x) * W3 x);
//     on a GPU gate and up may be bf16 (the products written in bf16 under Precision::BF16): the
//     output and the gradients are then bf16 too, computed in f32.
//   swiglu_packed(gate_up) = swiglu on the two halves of each row: gate_up (..., 2F) holds gate
//     in columns [0, F) and up in [F, 2F) (one product of x with W1 and W3 stacked, LLaMA's
//     gate_proj | up_proj); -> (..., F), the same values as swiglu(gate, up) bit for bit. The
//     gradient is one (..., 2F) tensor (d gate | d up) in gate_up's dtype (bf16 on a GPU as
//     swiglu's).
//   bias_gelu(x, bias) = gelu(x + bias), x (..., F), bias (F) broadcast over the rows: GPT-2's
//     FFN with c_fc's bias moved out of the product, so that under bf16 on a GPU the product
//     writes its (rows, F) output once in bf16 and this op reads and writes bf16 (PyTorch
//     autocast's storage) while adding the f32 bias and computing GELU in f32. x is f32 or f64
//     (bias of the same dtype), or bf16 on a GPU with an f32 bias; y and grad x take x's dtype,
//     grad bias the bias's (the column sums of grad x before it is rounded).
#pragma once
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

Tensor gelu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor swiglu(const Tensor& gate, const Tensor& up);
Tensor swiglu_packed(const Tensor& gate_up);
Tensor bias_gelu(const Tensor& x, const Tensor& bias);

using ActivationForwardFn = void (*)(const Tensor& x, Tensor& out);
using ActivationBackwardFn = void (*)(const Tensor& grad, const Tensor& x, Tensor& grad_x);
using GatedForwardFn = void (*)(const Tensor& gate, const Tensor& up, Tensor& out);
// Fills the gradients whose pointer is non-null.
using GatedBackwardFn = void (*)(const Tensor& grad, const Tensor& gate, const Tensor& up,
                                 Tensor* grad_gate, Tensor* grad_up);
extern OpKernels<ActivationForwardFn, ActivationBackwardFn> gelu_kernels;
extern OpKernels<ActivationForwardFn, ActivationBackwardFn> silu_kernels;
extern OpKernels<GatedForwardFn, GatedBackwardFn> swiglu_kernels;
// gate_up (rows, 2F) -> out (rows, F); backward: grad (rows, F) -> grad_gate_up (rows, 2F)
// (any leading dims as rows, all contiguous).
using PackedGatedForwardFn = void (*)(const Tensor& gate_up, Tensor& out);
using PackedGatedBackwardFn = void (*)(const Tensor& grad, const Tensor& gate_up,
                                       Tensor& grad_gate_up);
extern OpKernels<PackedGatedForwardFn, PackedGatedBackwardFn> swiglu_packed_kernels;
// x (rows, F), bias (F) -> out (rows, F); backward fills grad_x (rows, F) and grad_bias (F).
using BiasActivationForwardFn = void (*)(const Tensor& x, const Tensor& bias, Tensor& out);
using BiasActivationBackwardFn = void (*)(const Tensor& grad, const Tensor& x, const Tensor& bias,
                                          Tensor& grad_x, Tensor& grad_bias);
extern OpKernels<BiasActivationForwardFn, BiasActivationBackwardFn> bias_gelu_kernels;

}  // namespace sinklab::ops
