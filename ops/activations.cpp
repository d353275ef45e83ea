#include "ops/activations.h"

#include "autograd/node.h"
#include "ops/cpu/activations.h"

namespace sinklab::ops {

OpKernels<ActivationForwardFn, ActivationBackwardFn> gelu_kernels{"gelu", cpu::gelu_forward,
                                                                  cpu::gelu_backward};
OpKernels<ActivationForwardFn, ActivationBackwardFn> silu_kernels{"silu", cpu::silu_forward,
                                                                  cpu::silu_backward};
OpKernels<GatedForwardFn, GatedBackwardFn> swiglu_kernels{"swiglu", cpu::swiglu_forward,
                                                          cpu::swiglu_backward};
OpKernels<PackedGatedForwardFn, PackedGatedBackwardFn> swiglu_packed_kernels{
    "swiglu_packed", cpu::swiglu_packed_forward, cpu::swiglu_packed_backward};
OpKernels<BiasActivationForwardFn, BiasActivationBackwardFn> bias_gelu_kernels{
    "bias_gelu", cpu::bias_gelu_forward, cpu::bias_gelu_backward};

namespace {

// y = act(x) for gelu and silu; backward saves x.
Tensor activation(const Tensor& x, const char* op,
                  const OpKernels<ActivationForwardFn, ActivationBackwardFn>& kernels) {
  check_float(x, op, "x");
  check_contiguous(x, op, "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());  // (...) like x
  kernels.forward(x.device())(x, y);
  autograd::record(y, op, {x}, [k = &kernels, x = x.detach()](const Tensor& g) {
    Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());  // (...) like x
    k->backward(g.device())(g, x, gx);
    return std::vector<Tensor>{gx};
  });
  return y;
}

}  // namespace

Tensor gelu(const Tensor& x) { return activation(x, "gelu", gelu_kernels); }

Tensor silu(const Tensor& x) { return activation(x, "silu", silu_kernels); }

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_float_storage(gate, "swiglu", "gate");
  check_defined(up, "swiglu", "up");
  check_same_device(gate, up, "swiglu");
  check_same_dtype(gate, up, "swiglu");
  check_contiguous(gate, "swiglu", "gate");
  check_contiguous(up, "swiglu", "up");
  SINKLAB_CHECK(gate.shape() == up.shape(), ShapeError,
                "swiglu: gate " << shape_str(gate.shape()) << " and up "
                                << shape_str(up.shape()) << " differ",
                "gate and up are the two FFN projections of one input: same shape (..., F)");
  Tensor y = Tensor::empty(gate.shape(), gate.dtype(), gate.device());  // (..., F)
  swiglu_kernels.forward(gate.device())(gate, up, y);
  autograd::record(y, "swiglu", {gate, up},
                   [gate = gate.detach(), up = up.detach(), rg = gate.requires_grad(),
                    ru = up.requires_grad()](const Tensor& g) {
                     SINKLAB_CHECK(g.dtype() == gate.dtype(), DTypeError,
                                   "swiglu backward: gradient " << g.str() << " for output of "
                                                                << gate.str(),
                                   "the gradient of swiglu's output has the output's dtype");
                     Tensor gg, gu;
                     // (..., F) each
                     if (rg) gg = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
                     if (ru) gu = Tensor::empty(up.shape(), up.dtype(), up.device());
                     swiglu_kernels.backward(g.device())(g, gate, up, rg ? &gg : nullptr,
                                                         ru ? &gu : nullptr);
                     return std::vector<Tensor>{gg, gu};
                   });
  return y;
}

Tensor swiglu_packed(const Tensor& gate_up) {
  const char* op = "swiglu_packed";
  check_float_storage(gate_up, op, "gate_up");
  check_contiguous(gate_up, op, "gate_up");
  SINKLAB_CHECK(gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0, ShapeError,
                op << ": gate_up " << shape_str(gate_up.shape())
                   << " must be (..., 2F): gate and up side by side in each row",
                "pass the packed gate | up product (an even last dim), or swiglu(gate, up)");
  Shape out_shape = gate_up.shape();
  out_shape.back() /= 2;
  Tensor y = Tensor::empty(out_shape, gate_up.dtype(), gate_up.device());  // (..., F)
  swiglu_packed_kernels.forward(gate_up.device())(gate_up, y);
  autograd::record(y, op, {gate_up}, [gate_up = gate_up.detach()](const Tensor& g) {
    SINKLAB_CHECK(g.dtype() == gate_up.dtype(), DTypeError,
                  "swiglu_packed backward: gradient " << g.str() << " for gate_up "
                                                      << gate_up.str(),
                  "the gradient of swiglu_packed's output has the output's dtype");
    // (..., 2F): d gate | d up
    Tensor ggu = Tensor::empty(gate_up.shape(), gate_up.dtype(), gate_up.device());
    swiglu_packed_kernels.backward(g.device())(g, gate_up, ggu);
    return std::vector<Tensor>{ggu};
  });
  return y;
}

Tensor bias_gelu(const Tensor& x, const Tensor& bias) {
  const char* op = "bias_gelu";
  check_float_storage(x, op, "x");
  check_contiguous(x, op, "x");
  check_float(bias, op, "bias");
  check_same_device(x, bias, op);
  check_contiguous(bias, op, "bias");
  SINKLAB_CHECK(x.dim() >= 1, ShapeError, op << ": x " << x.str() << " has no feature dim",
                "x is (..., F)");
  check_shape(bias, {x.size(-1)}, op, "bias");
  SINKLAB_CHECK(bias.dtype() == (x.dtype() == DType::BF16 ? DType::F32 : x.dtype()), DTypeError,
                op << ": bias " << bias.str() << " does not go with x " << x.str(),
                "the bias has x's dtype (f32 with a bf16 x)");
  const int64_t F = x.size(-1), rows = F > 0 ? x.numel() / F : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());  // (..., F) like x
  Tensor y2 = y.reshape_view({rows, F});                         // (rows, F)
  bias_gelu_kernels.forward(x.device())(x.reshape_view({rows, F}), bias, y2);
  autograd::record(y, op, {x, bias},
                   [x = x.detach(), bias = bias.detach(), rows, F, rx = x.requires_grad(),
                    rb = bias.requires_grad()](const Tensor& g) {
                     SINKLAB_CHECK(g.dtype() == x.dtype(), DTypeError,
                                   "bias_gelu backward: gradient " << g.str() << " for x "
                                                                   << x.str(),
                                   "the gradient of y has y's dtype");
                     check_contiguous(g, "bias_gelu backward", "gradient");
                     Tensor gx = Tensor::empty({rows, F}, x.dtype(), x.device());  // (rows, F)
                     Tensor gb = Tensor::empty({F}, bias.dtype(), bias.device());  // (F)
                     bias_gelu_kernels.backward(g.device())(g.reshape_view({rows, F}),
                                                            x.reshape_view({rows, F}), bias, gx,
                                                            gb);
                     return std::vector<Tensor>{rx ? gx.reshape_view(x.shape()) : Tensor(),
                                                rb ? gb : Tensor()};
                   });
  return y;
}

}  // namespace sinklab::ops
