#include "ops/layernorm.h"

#include <atomic>
#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/layernorm.h"

namespace sinklab::ops {

bool fused_norm_param_grads = true;

namespace {
std::atomic<int64_t> param_grads_fused{0};
}  // namespace

int64_t norm_param_grads_fused() { return param_grads_fused.load(); }
void count_norm_param_grads_fused() { param_grads_fused.fetch_add(1); }

OpKernels<LayerNormForwardFn, LayerNormBackwardFn> layernorm_kernels{
    "layernorm", cpu::layernorm_forward, cpu::layernorm_backward};
OpKernels<AddLayerNormForwardFn, AddLayerNormForwardFn> add_layernorm_kernels{
    "add_layernorm", cpu::add_layernorm_forward, nullptr};

namespace {

// A per-channel parameter (C): defined, on x's device and dtype, contiguous, shape (C).
void check_channel_param(const Tensor& x, const Tensor& p, const char* arg) {
  check_defined(p, "layernorm", arg);
  check_same_device(x, p, "layernorm");
  check_same_dtype(x, p, "layernorm");
  check_contiguous(p, "layernorm", arg);
  check_shape(p, {x.size(-1)}, "layernorm", arg);
}

// The checks of layernorm's x and parameters.
void check_layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
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
}

// Records y = layernorm(x) (mean, rstd from the forward) for autograd.
void record_layernorm(Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Tensor& mean, const Tensor& rstd) {
  autograd::record(
      y, "layernorm", {x, weight, bias},
      [x = x.detach(), weight = weight.detach(), mean, rstd, rx = x.requires_grad(),
       rw = weight.requires_grad(), rb = bias.defined() && bias.requires_grad()](const Tensor& g) {
        Tensor gx, gw, gb;
        if (rx) gx = Tensor::empty(x.shape(), x.dtype(), x.device());          // (..., C)
        if (rw) gw = Tensor::empty(weight.shape(), x.dtype(), x.device());     // (C)
        if (rb) gb = Tensor::empty(weight.shape(), x.dtype(), x.device());     // (C)
        // The residual stream's gradient already at x, added in the same pass (add_norm.h).
        const Tensor residual = rx ? foldable_residual_grad(x) : Tensor();  // (..., C) or none
        Tensor gx16 = residual_grad_operand(residual, gx);  // (..., C) bf16 or none
        layernorm_kernels.backward(g.device())(g, x, weight, mean, rstd,
                                               residual.defined() ? &residual : nullptr,
                                               rx ? &gx : nullptr, gx16.defined() ? &gx16 : nullptr,
                                               rw ? &gw : nullptr, rb ? &gb : nullptr);
        if (residual.defined()) residual_grad_folded(gx, gx16);
        return std::vector<Tensor>{gx, gw, gb};
      });
}

}  // namespace

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                 NormOutput output) {
  check_layernorm(x, weight, bias, eps);
  const int64_t C = x.size(-1), rows = x.numel() / C;
  Tensor y = Tensor::empty(x.shape(), norm_output_dtype(x, output), x.device());  // (..., C)
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  layernorm_kernels.forward(x.device())(x, weight, bias, eps, y, mean, rstd);
  record_layernorm(y, x, weight, bias, mean, rstd);
  return y;
}

AddNorm add_layernorm(const Tensor& x, const Tensor& delta, const Tensor& weight,
                      const Tensor& bias, double eps, NormOutput output) {
  check_layernorm(x, weight, bias, eps);
  check_delta(x, delta, "add_layernorm");
  const int64_t C = x.size(-1), rows = x.numel() / C;
  AddNorm r{Tensor::empty(x.shape(), x.dtype(), x.device()),   // (..., C) x + delta
            Tensor::empty(x.shape(), norm_output_dtype(x, output), x.device())};  // its layernorm
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());   // (rows)
  add_layernorm_kernels.forward(x.device())(x, delta, weight, bias, eps, r.sum, r.normed, mean,
                                            rstd);
  record_residual_sum(r.sum, x, delta);  // first: the norm's node takes the sum as its input
  record_layernorm(r.normed, r.sum, weight, bias, mean, rstd);
  return r;
}

}  // namespace sinklab::ops
