#include "ops/mlp.h"

#include "autograd/node.h"
#include "ops/activations.h"
#include "ops/matmul.h"

namespace sinklab::ops {

OpKernels<GeluLinearFn, GeluLinearFn> gelu_linear_kernels{"gelu_linear", gelu_linear_composed,
                                                          nullptr};
OpKernels<GeluGradProductFn, GeluGradProductFn> gelu_grad_product_kernels{
    "gelu_grad_product", gelu_grad_product_composed, nullptr};

namespace {

// The zero bias bias_gelu's rows take here: (F), f32 for a bf16 pre, else pre's dtype.
Tensor zero_bias(const Tensor& pre) {
  return Tensor::zeros({pre.size(-1)}, pre.dtype() == DType::BF16 ? DType::F32 : pre.dtype(),
                       pre.device());
}

// (rows, F) view of a contiguous (1, rows, F) tensor.
Tensor rows_of(const Tensor& t) { return t.reshape_view({t.numel() / t.size(-1), t.size(-1)}); }

}  // namespace

void gelu_linear_composed(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& pre,
                          Tensor& hidden) {
  const Device device = x.device();
  linear_kernels.forward(device)(x, w, bias, pre);
  Tensor hidden2 = rows_of(hidden);  // (rows, F)
  bias_gelu_kernels.forward(device)(rows_of(pre), zero_bias(pre), hidden2);
}

void gelu_grad_product_composed(const Tensor& g, const Tensor& w, const Tensor& pre,
                                Tensor& grad_pre, Tensor* grad_bias) {
  const Device device = g.device();
  Tensor grad_hidden = Tensor::empty(pre.shape(), pre.dtype(), device);  // (1, rows, F)
  matmul_kernels.forward(device)(g, false, w, false, grad_hidden, false);
  const Tensor zeros = zero_bias(pre);                                         // (F)
  Tensor sums = grad_bias ? *grad_bias : Tensor::empty(zeros.shape(), zeros.dtype(), device);
  Tensor grad_pre2 = rows_of(grad_pre);  // (rows, F)
  bias_gelu_kernels.backward(device)(rows_of(grad_hidden), rows_of(pre), zeros, grad_pre2, sums);
}

GeluMlp gelu_mlp(const Tensor& x, const Tensor& w_fc, const Tensor& b_fc, const Tensor& w_proj,
                 const Tensor& b_proj, LinearOutput output) {
  const char* op = "gelu_mlp";
  check_defined(x, op, "x");
  check_contiguous(x, op, "x");
  for (const Tensor* w : {&w_fc, &w_proj}) {
    const char* name = w == &w_fc ? "w_fc" : "w_proj";
    check_defined(*w, op, name);
    check_same_device(x, *w, op);
    check_contiguous(*w, op, name);
    check_rank(*w, 2, op, name);
    check_float(*w, op, name);
  }
  check_same_dtype(w_fc, w_proj, op);
  if (x.dtype() == DType::BF16)
    SINKLAB_CHECK(x.device().is_cuda() && w_fc.dtype() == DType::F32, DTypeError,
                  op << ": a bf16 x " << x.str() << " goes with f32 weights on a GPU",
                  "pass x in the weights' dtype, or bf16 on a GPU with f32 weights");
  else
    check_same_dtype(x, w_fc, op);
  SINKLAB_CHECK(x.dim() >= 1, ShapeError, op << ": x " << x.str() << " has no feature dim",
                "x is (..., C)");
  const int64_t C = x.size(-1), F = w_fc.size(0), rows = C > 0 ? x.numel() / C : 0;
  SINKLAB_CHECK(w_fc.size(1) == C && w_proj.size(0) == C && w_proj.size(1) == F,
                ShapeError,
                op << ": x " << shape_str(x.shape()) << ", w_fc " << shape_str(w_fc.shape())
                   << " and w_proj " << shape_str(w_proj.shape()) << " do not chain",
                "x (..., C), w_fc (F, C), w_proj (C, F)");
  for (const Tensor* b : {&b_fc, &b_proj}) {
    if (!b->defined()) continue;
    const char* name = b == &b_fc ? "b_fc" : "b_proj";
    check_same_device(x, *b, op);
    check_same_dtype(w_fc, *b, op);
    check_contiguous(*b, op, name);
    check_shape(*b, {b == &b_fc ? F : C}, op, name);
  }
  const Device device = x.device();
  // Operands as the products read them (bf16 under Precision::BF16 on a GPU).
  const Tensor x3 = tensor_core_operand(x).reshape_view({1, rows, C});  // (1, rows, C)
  const Tensor w_fc3 = tensor_core_operand(w_fc).reshape_view({1, F, C});      // (1, F, C)
  const Tensor w_proj3 = tensor_core_operand(w_proj).reshape_view({1, C, F});  // (1, C, F)
  Tensor pre = Tensor::empty({1, rows, F}, x3.dtype(), device);     // (1, rows, F)
  Tensor hidden = Tensor::empty({1, rows, F}, x3.dtype(), device);  // (1, rows, F)
  gelu_linear_kernels.forward(device)(x3, w_fc3, b_fc, pre, hidden);
  const DType y_dtype = output == LinearOutput::kOperandDType ? hidden.dtype() : w_proj.dtype();
  Tensor y = Tensor::empty({1, rows, C}, y_dtype, device);  // (1, rows, C)
  linear_kernels.forward(device)(hidden, w_proj3, b_proj, y);
  Shape hidden_shape = x.shape();
  hidden_shape.back() = F;
  Tensor out = y.reshape_view(x.shape());  // (..., C)
  const WeightGradSink w_fc_grad(w_fc), w_proj_grad(w_proj);
  autograd::record(
      out, op, {x, w_fc, b_fc, w_proj, b_proj},
      [x3 = x3.detach(), w_fc3 = w_fc3.detach(), w_proj3 = w_proj3.detach(), pre, hidden,
       x_shape = x.shape(), x_dtype = x.dtype(),
       w_dtype = w_fc.dtype(), w_fc_grad, w_proj_grad, rx = x.requires_grad(),
       rw_fc = w_fc.requires_grad(), rb_fc = b_fc.defined() && b_fc.requires_grad(),
       rw_proj = w_proj.requires_grad(),
       rb_proj = b_proj.defined() && b_proj.requires_grad()](const Tensor& g) {
        const int64_t C = w_proj3.size(1), F = w_proj3.size(2), rows = pre.size(1);
        const Device device = g.device();
        const Tensor g2 = g.reshape_view({1, rows, C});  // (1, rows, C)
        const Tensor g3 = tensor_core_operand(g2);       // (1, rows, C) as the products read it
        Tensor gx, gw_fc, gb_fc;
        // (C, F) and (C), f32 from a bf16 g
        auto [gw_proj, gb_proj] =
            w_proj_grad.weight_and_bias(g2, g3, hidden, rw_proj, rb_proj, w_dtype);
        if (rx || rw_fc || rb_fc) {
          Tensor grad_pre = Tensor::empty(pre.shape(), pre.dtype(), device);  // (1, rows, F)
          if (rb_fc) gb_fc = Tensor::empty({F}, w_dtype, device);           // (F)
          gelu_grad_product_kernels.forward(device)(g3, w_proj3, pre, grad_pre,
                                                    rb_fc ? &gb_fc : nullptr);
          if (rw_fc) gw_fc = w_fc_grad.accumulate(grad_pre, x3);
          if (rx) {
            gx = Tensor::empty({1, rows, C}, x_dtype, device);  // (1, rows, C)
            matmul_kernels.forward(device)(grad_pre, false, w_fc3, false, gx, false);
            gx = gx.reshape_view(x_shape);
          }
        }
        return std::vector<Tensor>{gx, gw_fc, gb_fc, gw_proj, gb_proj};
      });
  return {out, hidden.detach().reshape_view(hidden_shape)};
}

}  // namespace sinklab::ops
