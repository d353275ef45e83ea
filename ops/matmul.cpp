#include "ops/matmul.h"

#include <atomic>
#include <optional>

#include "core/precision.h"
#include "autograd/node.h"
#include "ops/cpu/gemm.h"
#include "ops/remembered_operands.h"
#include "ops/weight_operands.h"

namespace sinklab::ops {

OpKernels<GemmFn, GemmFn> matmul_kernels{"matmul", cpu::batched_gemm, cpu::batched_gemm};
OpKernels<BiasGradFn, BiasGradFn> bias_grad_kernels{"bias_grad", cpu::bias_grad, cpu::bias_grad};
OpKernels<LinearFn, LinearFn> linear_kernels{"linear", cpu::linear_forward, nullptr};
OpKernels<RoundFn, RoundFn> bf16_round_kernels{"bf16_round", cpu::round_to_bf16, nullptr};
OpKernels<WeightBiasGradFn, WeightBiasGradFn> weight_bias_grad_kernels{
    "weight_bias_grad", weight_bias_grad_composed, nullptr};
Bf16Gemm bf16_gemm_preference = Bf16Gemm::Rounded;
GemmEpilogues gemm_epilogues = GemmEpilogues::None;
int gemm_search = 0;

namespace {
std::atomic<int64_t> g_gemm_searches{0};
}  // namespace
int64_t gemm_searches() { return g_gemm_searches.load(); }
void count_gemm_search() { ++g_gemm_searches; }

std::string (*gemm_choices_on_device)() = nullptr;
std::string (*gemm_library_on_device)() = nullptr;
size_t (*use_gemm_choices_on_device)(const std::string&, const std::string&) = nullptr;
void (*forget_gemm_plans_on_device)() = nullptr;

std::string gemm_choices() { return gemm_choices_on_device ? gemm_choices_on_device() : ""; }

size_t use_gemm_choices(const std::string& text, const std::string& where) {
  return use_gemm_choices_on_device ? use_gemm_choices_on_device(text, where) : 0;
}

void forget_gemm_plans() {
  if (forget_gemm_plans_on_device) forget_gemm_plans_on_device();
}

std::string gemm_library() { return gemm_library_on_device ? gemm_library_on_device() : ""; }
bool bias_grad_columns = true;

WeightGradSink::WeightGradSink(const Tensor& w) {
  if (w.requires_grad() && w.is_leaf() && w.grad().defined() && w.grad().is_contiguous() &&
      w.grad().dtype() == w.dtype() && w.grad().shape() == w.shape()) {
    buffer_ = w.grad();
    leaf_ = w;
  }
}

void weight_bias_grad_composed(const Tensor& g, const Tensor& g3, const Tensor& x3, Tensor& gw,
                               bool accumulate, Tensor& grad_bias) {
  matmul_kernels.forward(g3.device())(g3, true, x3, false, gw, accumulate);
  bias_grad_kernels.forward(g.device())(g, grad_bias);
}

Tensor WeightGradSink::accumulate(const Tensor& g3, const Tensor& x3, const Tensor& g,
                                  Tensor* grad_bias) const {
  const int64_t N = g3.size(2), K = x3.size(2);
  const Device device = g3.device();
  auto product = [&](Tensor& into, bool add) {  // into (1, N, K) (+)= g^T x (and the bias's)
    if (grad_bias)
      weight_bias_grad_kernels.forward(device)(g, g3, x3, into, add, *grad_bias);
    else
      matmul_kernels.forward(device)(g3, true, x3, false, into, add);
  };
  // Still the buffer the forward saw (nothing replaced w's gradient since)?
  if (buffer_.defined() && leaf_.grad().defined() &&
      leaf_.grad().raw_data() == buffer_.raw_data()) {  // w.grad += g^T x, in place
    Tensor into = buffer_.reshape_view({1, N, K});      // (1, N, K)
    product(into, true);
    return Tensor();
  }
  Tensor gw = Tensor::empty({1, N, K}, g3.dtype() == DType::BF16 ? DType::F32 : g3.dtype(),
                            device);  // (1, N, K)
  product(gw, false);
  return gw.reshape_view({N, K});
}

std::pair<Tensor, Tensor> WeightGradSink::weight_and_bias(const Tensor& g, const Tensor& g3,
                                                          const Tensor& x3, bool want_w,
                                                          bool want_bias,
                                                          DType bias_dtype) const {
  Tensor gw, gbias;
  if (want_bias) gbias = Tensor::empty({g.size(2)}, bias_dtype, g.device());  // (N)
  if (want_w && want_bias) {
    gw = accumulate(g3, x3, g, &gbias);
  } else if (want_w) {
    gw = accumulate(g3, x3);
  } else if (want_bias) {
    bias_grad_kernels.backward(g.device())(g, gbias);
  }
  return {gw, gbias};
}

bool rounds_to_operand(const Tensor& t) {
  return t.device().is_cuda() && t.dtype() == DType::F32 && cuda_precision() == Precision::BF16;
}

Tensor tensor_core_operand(const Tensor& t) {
  if (!rounds_to_operand(t)) return t;
  if (Tensor copy = take_remembered_operand(t); copy.defined()) return copy;
  if (Tensor view = weight_operand_view(t); view.defined()) return view;
  Tensor out = Tensor::empty(t.shape(), DType::BF16, t.device());  // t's shape, bf16
  bf16_round_kernels.forward(t.device())(t, out);
  return out;
}


namespace {

// (batch, rows, cols) view of a contiguous (..., rows, cols) tensor.
Tensor as_batched(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  return t.reshape_view({t.numel() / (rows * cols), rows, cols});
}

// c = op(a) @ op(b) for 3-D contiguous operands, c allocated here with `batch` entries, in
// out_dtype (by default a's dtype, f32 for bf16 operands).
Tensor gemm3(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t batch,
             std::optional<DType> out_dtype = std::nullopt) {
  const int64_t M = ta ? a.size(2) : a.size(1);
  const int64_t N = tb ? b.size(1) : b.size(2);
  const DType c_dtype =
      out_dtype.value_or(a.dtype() == DType::BF16 ? DType::F32 : a.dtype());  // bf16 in, f32 out
  Tensor c = Tensor::empty({batch, M, N}, c_dtype, a.device());
  matmul_kernels.forward(a.device())(a, ta, b, tb, c, false);
  return c;
}

void check_operands(const Tensor& a, const Tensor& b, const char* op) {
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  check_same_device(a, b, op);
  check_same_dtype(a, b, op);
  check_contiguous(a, op, "a");
  check_contiguous(b, op, "b");
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  check_operands(a, b, "matmul");
  SINKLAB_CHECK(a.dim() >= 2 && b.dim() >= 2, ShapeError,
                "matmul: a " << a.str() << " and b " << b.str() << " must have rank >= 2",
                "reshape vectors to (1, K) or (K, 1)");
  const bool b_shared = b.dim() == 2;
  SINKLAB_CHECK(b_shared || (a.dim() == b.dim() &&
                             Shape(a.shape().begin(), a.shape().end() - 2) ==
                                 Shape(b.shape().begin(), b.shape().end() - 2)),
                ShapeError,
                "matmul: batch dims of a " << shape_str(a.shape()) << " and b "
                                           << shape_str(b.shape()) << " differ",
                "b must be 2-D (shared) or have a's leading dims");
  const int64_t Ka = ta ? a.size(-2) : a.size(-1);
  const int64_t Kb = tb ? b.size(-1) : b.size(-2);
  SINKLAB_CHECK(Ka == Kb, ShapeError,
                "matmul: inner dims differ: a " << shape_str(a.shape()) << (ta ? "^T" : "")
                                                << " and b " << shape_str(b.shape())
                                                << (tb ? "^T" : ""),
                "a's columns must equal b's rows (after the transposes)");
  Tensor a3 = as_batched(a), b3 = as_batched(b);
  const int64_t batch = a3.size(0);
  Tensor c3 = gemm3(a3, ta, b3, tb, batch);
  Shape out_shape(a.shape().begin(), a.shape().end() - 2);
  out_shape.push_back(c3.size(1));
  out_shape.push_back(c3.size(2));
  Tensor out = c3.reshape_view(out_shape);
  autograd::record(
      out, "matmul", {a, b},
      [a3 = a3.detach(), b3 = b3.detach(), ta, tb, b_shared, a_shape = a.shape(),
       b_shape = b.shape(), ra = a.requires_grad(), rb = b.requires_grad()](const Tensor& g) {
        Tensor g3 = as_batched(g);
        const int64_t batch = g3.size(0);
        Tensor ga, gb;
        // C = A B: dA = dC B^T, dB = A^T dC (with the stored transposes folded in).
        if (ra) {
          ga = ta ? gemm3(b3, tb, g3, true, batch) : gemm3(g3, false, b3, !tb, batch);
          ga = ga.reshape_view(a_shape);
        }
        if (rb) {
          if (b_shared) {  // sum over the batch: fold it into the rows
            const int64_t M = g3.size(1), N = g3.size(2);
            Tensor g2 = g3.reshape_view({1, batch * M, N});
            Tensor a2 = ta ? a3 : a3.reshape_view({1, batch * M, a3.size(2)});
            if (ta) {  // a3 is (batch, K, M): stack the batch along M by transposing per entry
              Tensor at = Tensor::empty({batch, M, a3.size(1)}, a3.dtype(), a3.device());
              at.copy_from(a3.transpose_view(1, 2));
              a2 = at.reshape_view({1, batch * M, a3.size(1)});
            }
            gb = tb ? gemm3(g2, true, a2, false, 1) : gemm3(a2, true, g2, false, 1);
          } else {
            gb = tb ? gemm3(g3, true, a3, ta, batch) : gemm3(a3, !ta, g3, false, batch);
          }
          gb = gb.reshape_view(b_shape);
        }
        return std::vector<Tensor>{ga, gb};
      });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_operand,
              LinearOutput output) {
  check_defined(x, "linear", "x");
  check_defined(w, "linear", "w");
  if (x.dtype() == DType::BF16 && x.device().is_cuda()) {  // a bf16 activation, f32 weights
    check_dtype(w, DType::F32, "linear", "w");
    check_same_device(x, w, "linear");
    check_contiguous(x, "linear", "x");
    check_contiguous(w, "linear", "w");
  } else {
    check_operands(x, w, "linear");
  }
  check_rank(w, 2, "linear", "w");
  SINKLAB_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), ShapeError,
                "linear: x " << shape_str(x.shape()) << " does not match w "
                             << shape_str(w.shape()) << " (N, K)",
                "x's last dim must equal w's second dim");
  if (bias.defined()) {
    check_same_device(x, bias, "linear");
    check_same_dtype(w, bias, "linear");
    check_shape(bias, {w.size(0)}, "linear", "bias");
  }
  const int64_t K = w.size(1), N = w.size(0), rows = x.numel() / K;
  if (x_operand.defined())
    SINKLAB_CHECK(x_operand.shape() == x.shape() && x_operand.device() == x.device(), ShapeError,
                  "linear: x_operand " << x_operand.str() << " is not a rounding of x "
                                       << x.str(),
                  "pass tensor_core_operand(x) of this x, or no x_operand");
  // Operands as the product reads them (bf16 copies under Precision::BF16 on a GPU).
  Tensor x3 = (x_operand.defined() ? x_operand : tensor_core_operand(x))
                  .reshape_view({1, rows, K});                        // (1, rows, K)
  Tensor w3 = tensor_core_operand(w.reshape_view({1, N, K}));  // (1, N, K)
  const DType y_dtype = output == LinearOutput::kOperandDType ? x3.dtype() : w.dtype();
  Tensor y = Tensor::empty({1, rows, N}, y_dtype, x.device());  // (1, rows, N)
  linear_kernels.forward(x.device())(x3, w3, bias, y);
  Shape out_shape = x.shape();
  out_shape.back() = N;
  Tensor out = y.reshape_view(out_shape);
  const WeightGradSink w_grad(w);
  autograd::record(out, "linear", {x, w, bias},
                   [x3 = x3.detach(), w3 = w3.detach(), x_shape = x.shape(),
                    x_dtype = x.dtype(), w_dtype = w.dtype(), rx = x.requires_grad(),
                    rw = w.requires_grad(), w_grad,
                    rbias = bias.defined() && bias.requires_grad()](const Tensor& g) {
                     const int64_t N = w3.size(1);
                     Tensor g2 = g.reshape_view({1, g.numel() / N, N});  // (1, rows, N)
                     // Rounded once for both products (a bf16 output's gradient already is).
                     Tensor g3 = tensor_core_operand(g2);
                     Tensor gx;
                     if (rx) gx = gemm3(g3, false, w3, false, 1, x_dtype).reshape_view(x_shape);
                     // f32 bias gradient from a bf16 g
                     auto [gw, gbias] = w_grad.weight_and_bias(g2, g3, x3, rw, rbias, w_dtype);
                     return std::vector<Tensor>{gx, gw, gbias};
                   });
  return out;
}

}  // namespace sinklab::ops
