#include "ops/layernorm.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/layernorm.h"

namespace sinklab::ops {

OpKernels<LayerNormForwardFn, LayerNormBackwardFn> layernorm_kernels{
    "layernorm", cpu::layernorm_forward, cpu::layernorm_backward};

namespace {

// A per-channel parameter (C): defined, on x's device and dtype, contiguous, shape (C).
void check_channel_param(const Tensor& x, const Tensor& p, const char* arg) {
  check_defined(p, "layernorm", arg);
  check_same_device(x, p, "layernorm");
  check_same_dtype(x, p, "layernorm");
  check_contiguous(p, "layernorm", arg);
  check_shape(p, {x.size(-1)}, "layernorm", arg);
}

}  // namespace

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_float(x, "layernorm", "x");
  check_contiguous(x, "layernorm", "x");
  SINKLAB_CHECK(x.dim() >= 1 && x.size(-1) > 0, ShapeError,
                "layernorm: x " << x.str() << " needs a non-empty last dim (C)",
                "pass x of shape (..., C) with C >= 1");
  check_channel_param(x, weight, "weight");
  if (bias.defined()) check_channel_param(x, bias, "bias");
  SINKLAB_CHECK(eps > 0 && std::isfinite(eps), ValueError,
                "layernorm: eps " << eps << " must be positive and finite",
                "use e.g. 1e-5 (a zero eps divides by zero on a constant row)");
  const int64_t C = x.size(-1), rows = x.numel() / C;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());    // (..., C)
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  layernorm_kernels.forward(x.device())(x, weight, bias, eps, y, mean, rstd);
  autograd::record(
      y, "layernorm", {x, weight, bias},
      [x = x.detach(), weight = weight.detach(), mean, rstd, rx = x.requires_grad(),
       rw = weight.requires_grad(), rb = bias.defined() && bias.requires_grad()](const Tensor& g) {
        Tensor gx, gw, gb;
        if (rx) gx = Tensor::empty(x.shape(), x.dtype(), x.device());          // (..., C)
        if (rw) gw = Tensor::empty(weight.shape(), x.dtype(), x.device());     // (C)
        if (rb) gb = Tensor::empty(weight.shape(), x.dtype(), x.device());     // (C)
        layernorm_kernels.backward(g.device())(g, x, weight, mean, rstd, rx ? &gx : nullptr,
                                               rw ? &gw : nullptr, rb ? &gb : nullptr);
        return std::vector<Tensor>{gx, gw, gb};
      });
  return y;
}

}  // namespace sinklab::ops
