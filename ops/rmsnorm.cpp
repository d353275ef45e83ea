#include "ops/rmsnorm.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/rmsnorm.h"
#include "ops/statistics.h"

namespace sinklab::ops {

bool head_norm_statistics = false;

OpKernels<RmsNormForwardFn, RmsNormBackwardFn> rmsnorm_kernels{
    "rmsnorm", cpu::rmsnorm_forward, cpu::rmsnorm_backward};
OpKernels<RmsNormForwardFn, RmsNormBackwardFn> headwise_rmsnorm_kernels{
    "headwise_rmsnorm", cpu::rmsnorm_forward, cpu::rmsnorm_backward};
OpKernels<AddRmsNormForwardFn, AddRmsNormForwardFn> add_rmsnorm_kernels{
    "add_rmsnorm", cpu::add_rmsnorm_forward, nullptr};

namespace {

// Checks shared by both ops; each op then checks the shape of its gain against x. x may be bf16
// on a GPU (head-wise RMSNorm of cuDNN's bf16 attention output; the math is f32) with an f32
// gain.
void check_inputs(const Tensor& x, const Tensor& gain, const char* gain_arg, size_t min_rank,
                  double eps, const char* op) {
  check_float_storage(x, op, "x");
  check_contiguous(x, op, "x");
  SINKLAB_CHECK(x.dim() >= min_rank && x.size(-1) > 0, ShapeError,
                op << ": x " << x.str() << " needs rank >= " << min_rank
                   << " and a non-empty last dim",
                min_rank == 1 ? "pass x of shape (..., C)" : "pass x of shape (..., NH, HS)");
  if (gain.defined()) {
    check_same_device(x, gain, op);
    if (x.dtype() == DType::BF16)
      check_dtype(gain, DType::F32, op, gain_arg);
    else
      check_same_dtype(x, gain, op);
    check_contiguous(gain, op, gain_arg);
  }
  SINKLAB_CHECK(eps > 0 && std::isfinite(eps), ValueError,
                op << ": eps " << eps << " must be positive and finite",
                "use e.g. 1e-6 (a zero eps divides by zero on an all-zero row)");
}

// Records y = x * rstd * gain (rstd from the forward) for autograd, with kernels' backward. The
// gradient g arrives in y's dtype (bf16 for NormOutput::kOperandDType); x's gradient is x's dtype,
// the gain's the gain's.
void record_rms(Tensor& y, const Tensor& x, const Tensor& gain, const Tensor& rstd, const char* op,
                const OpKernels<RmsNormForwardFn, RmsNormBackwardFn>& kernels) {
  autograd::record(
      y, op, {x, gain},
      [k = &kernels, x = x.detach(), gain = gain.defined() ? gain.detach() : Tensor(), rstd,
       rx = x.requires_grad(), rg = gain.defined() && gain.requires_grad()](const Tensor& g) {
        Tensor gx, ggain;
        if (rx) gx = Tensor::empty(x.shape(), x.dtype(), x.device());            // (..., D)
        // (C) for rmsnorm; (NH, HS) or (HS) for headwise_rmsnorm
        if (rg) ggain = Tensor::empty(gain.shape(), gain.dtype(), gain.device());
        // A gradient already at x (the residual stream's), added in the same pass (add_norm.h).
        const Tensor residual = rx ? foldable_residual_grad(x) : Tensor();  // (..., D) or none
        Tensor gx16 = residual_grad_operand(residual, gx);  // (..., D) bf16 or none
        k->backward(g.device())(g, x, gain, rstd, residual.defined() ? &residual : nullptr,
                                rx ? &gx : nullptr, gx16.defined() ? &gx16 : nullptr,
                                rg ? &ggain : nullptr);
        if (residual.defined()) residual_grad_folded(gx, gx16);
        return std::vector<Tensor>{gx, ggain};
      });
}

// y = x * rsqrt(mean(x^2) + eps) * gain over rows of x's last dim (gain checked by the caller),
// stored in norm_output_dtype(x, output); stats (or null) as headwise_rmsnorm's.
Tensor rms_normalize(const Tensor& x, const Tensor& gain, double eps, NormOutput output,
                     const char* op,
                     const OpKernels<RmsNormForwardFn, RmsNormBackwardFn>& kernels,
                     NormRowStatistics* stats = nullptr) {
  const int64_t rows = x.numel() / x.size(-1);
  Tensor y = Tensor::empty(x.shape(), norm_output_dtype(x, output), x.device());  // (..., D)
  const DType math = x.dtype() == DType::BF16 ? DType::F32 : x.dtype();
  Tensor rstd = Tensor::empty({rows}, math, x.device());  // (rows)
  if (stats) {
    stats->input = Tensor::empty({rows, kRowStats}, math, x.device());   // (rows, 5)
    stats->output = Tensor::empty({rows, kRowStats}, math, x.device());  // (rows, 5)
  }
  kernels.forward(x.device())(x, gain, eps, y, rstd, stats);
  record_rms(y, x, gain, rstd, op, kernels);
  return y;
}

}  // namespace

Tensor rmsnorm(const Tensor& x, const Tensor& weight, double eps, NormOutput output) {
  check_inputs(x, weight, "weight", 1, eps, "rmsnorm");
  if (weight.defined()) check_shape(weight, {x.size(-1)}, "rmsnorm", "weight");
  return rms_normalize(x, weight, eps, output, "rmsnorm", rmsnorm_kernels);
}

AddNorm add_rmsnorm(const Tensor& x, const Tensor& delta, const Tensor& weight, double eps,
                    NormOutput output) {
  check_float(x, "add_rmsnorm", "x");  // the residual stream: f32 or f64
  check_inputs(x, weight, "weight", 1, eps, "rmsnorm");
  if (weight.defined()) check_shape(weight, {x.size(-1)}, "rmsnorm", "weight");
  check_delta(x, delta, "add_rmsnorm");
  const int64_t rows = x.numel() / x.size(-1);
  AddNorm r{Tensor::empty(x.shape(), x.dtype(), x.device()),    // (..., D) x + delta
            Tensor::empty(x.shape(), norm_output_dtype(x, output), x.device())};  // its rmsnorm
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());  // (rows)
  add_rmsnorm_kernels.forward(x.device())(x, delta, weight, eps, r.sum, r.normed, rstd);
  record_residual_sum(r.sum, x, delta);  // first: the norm's node takes the sum as its input
  record_rms(r.normed, r.sum, weight, rstd, "rmsnorm", rmsnorm_kernels);
  return r;
}

Tensor headwise_rmsnorm(const Tensor& x, const Tensor& gamma, double eps, NormOutput output,
                        NormRowStatistics* stats) {
  check_defined(gamma, "headwise_rmsnorm", "gamma");
  check_inputs(x, gamma, "gamma", 2, eps, "headwise_rmsnorm");
  const int64_t NH = x.size(-2), HS = x.size(-1);
  SINKLAB_CHECK(gamma.shape() == Shape({NH, HS}) || gamma.shape() == Shape({HS}), ShapeError,
                "headwise_rmsnorm: gamma " << shape_str(gamma.shape()) << " does not match x "
                                           << shape_str(x.shape()) << ": expected (NH, HS) = "
                                           << shape_str({NH, HS}) << " or (HS,) = "
                                           << shape_str({HS}),
                "gamma is per head (NH, HS) or shared by all heads (HS,); x is (..., NH, HS)");
  return rms_normalize(x, gamma, eps, output, "headwise_rmsnorm", headwise_rmsnorm_kernels,
                       stats);
}

}  // namespace sinklab::ops
