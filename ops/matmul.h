// Matrix products.
//   matmul(a, b, ta, tb): a (..., M, K) (or (..., K, M) when ta), b (K, N) (or (N, K) when tb)
//     shared by every batch entry, or b (..., K, N) with a's leading dims -> (..., M, N).
//   linear(x, w, bias): x (..., K), w (N, K), bias (N) or undefined -> x @ w^T + bias (..., N).
//     x_operand (optional): tensor_core_operand(x) computed once by a caller that feeds one x to
//     several linears (GPT-2's q, k, v), so x is rounded to bf16 once rather than per product.
//     output: by default the result has w's dtype (f32 or f64, the parameters' and the
//     residual stream's). LinearOutput::kOperandDType stores it in the product's operand dtype,
//     bf16 under Precision::BF16 on a GPU (x's dtype elsewhere), as PyTorch's autocast does: for
//     a large output whose only consumer reads bf16 (the logits, read by cross_entropy; GPT-2's
//     FFN hidden, read by bias_gelu), it halves the traffic and its gradient needs no rounding
//     pass. With a bias, the bias (rounded to bf16 on the GPU, as autocast does) joins the f32
//     product before the rounding.
//     x may be bf16 on a GPU (such an output, e.g. GELU's) with an f32 w: it is the operand as
//     is, and its gradient is written in bf16.
#pragma once
#include <string>
#include <utility>

#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

enum class LinearOutput { kWeightDType, kOperandDType };

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(),
              const Tensor& x_operand = Tensor(),
              LinearOutput output = LinearOutput::kWeightDType);

using GemmFn = void (*)(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                        bool accumulate);
using BiasGradFn = void (*)(const Tensor& grad, Tensor& grad_bias);
using RoundFn = void (*)(const Tensor& x, Tensor& out);
// y (1, rows, N) = x (1, rows, K) @ w (1, N, K)^T + bias (N) (bias may be undefined); y is f32
// or f64 like w, or bf16 (CUDA only) for LinearOutput::kOperandDType.
using LinearFn = void (*)(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y);
// Backward of a product is two more products; linear's bias gradient is a column sum.
extern OpKernels<GemmFn, GemmFn> matmul_kernels;
extern OpKernels<BiasGradFn, BiasGradFn> bias_grad_kernels;
// linear's forward product with the bias added in the same pass where the backend can (the CUDA
// slot uses cuBLASLt's bias epilogue on the tensor cores). Its backward is matmul's and bias_grad.
extern OpKernels<LinearFn, LinearFn> linear_kernels;
// A weight gradient and its bias's together: gw (1, N, K) = g^T x (+ gw when accumulate) from the
// operands g3 (1, rows, N) and x3 (1, rows, K), and grad_bias (N) = the column sums of the
// gradient. The CPU row (and the CUDA row's fallback) composes matmul's and bias_grad's rows,
// the sums taken from g (1, rows, N) as it came (f32 for an f32 output); the CUDA row with
// GemmEpilogues::ForwardBiasGrad or more sums g3 in the product's BGRADB epilogue.
using WeightBiasGradFn = void (*)(const Tensor& g, const Tensor& g3, const Tensor& x3, Tensor& gw,
                                  bool accumulate, Tensor& grad_bias);
extern OpKernels<WeightBiasGradFn, WeightBiasGradFn> weight_bias_grad_kernels;
void weight_bias_grad_composed(const Tensor& g, const Tensor& g3, const Tensor& x3, Tensor& gw,
                               bool accumulate, Tensor& grad_bias);
// f32 -> bf16 rounding of a GEMM operand (no backward: operands are rounded inside products).
extern OpKernels<RoundFn, RoundFn> bf16_round_kernels;

// How a CUDA product of f32 operands into an f32 C reaches the tensor cores under
// Precision::BF16 (run.bf16_gemm): Rounded rounds each operand to bf16 once (one pass into
// scratch) and multiplies through cuBLASLt, linear's bias in the epilogue; Fast hands the f32
// operands to cuBLAS, which converts them itself (CUBLAS_COMPUTE_32F_FAST_16BF, the bias added
// in a second pass), for benchmarking the two against each other. bf16 operands and bf16 outputs
// take the Rounded path either way. Read at each call; the trainer sets it once from the config.
enum class Bf16Gemm { Rounded, Fast };
extern Bf16Gemm bf16_gemm_preference;

// Which work CUDA products under bf16 fold into cuBLASLt's epilogues beyond linear's bias
// (run.gemm_epilogues), each level with the ones before it: None (GELU, its derivative and the
// bias gradients in passes of their own), Forward (GELU in GPT-2's c_fc product, GELU_AUX_BIAS;
// ops/mlp.h), ForwardBiasGrad (also the bias gradient of a linear with a bias in its weight
// gradient's product, BGRADB, summed from the bf16 output gradient as autocast sums it),
// ForwardBackward (also GELU's derivative in c_proj's backward product, DGELU_BGRAD). Read at
// each call; the trainer sets it once from the config.
enum class GemmEpilogues { None, Forward, ForwardBiasGrad, ForwardBackward };
extern GemmEpilogues gemm_epilogues;
// Where ForwardBiasGrad's bias gradients are summed on a GPU (run.bias_grad_columns): false, in
// the weight gradient's product (cuBLASLt's BGRADB, which an H100 runs as a kernel of its own
// after the product: about 50 us a call at GPT-2's shape); true, by the column-sum kernel
// (sum_leading) from the same bf16 operand g3, the same values summed in another order: half the
// bytes of the f32 gradient the composed row sums. On by default (measured faster on an H100).
extern bool bias_grad_columns;
// How many of cuBLASLt's candidate algorithms a CUDA bf16 product times on its first call with a
// shape (run.gemm_search): 0 or 1 takes the heuristic's first, as cuBLASLt ranks them (the
// process's default here; the trainer's, from the config, is 8); N > 1 asks the heuristic for up
// to N, runs each on the call's own operands (a warm-up and three timed runs, into scratch where
// the product accumulates) and keeps the fastest for the process, printing one line a shape.
// The choice follows the timings, so two processes may choose differently and then differ in
// the last bits: the trainer keeps the choices in each checkpoint and in the run folder
// (gemm_choices below, train/io/gemm_choices_file.h), and a resumed process or a fresh run in
// that folder takes them again; with several processes it sets 0. Not while the stream is
// being captured into a CUDA graph (the heuristic's first is kept for the shape then).
// Read when a shape's plan is made; the trainer sets it once from the config.
extern int gemm_search;
// Shapes whose candidates were timed (run.gemm_search) since the process started (for tests).
int64_t gemm_searches();
void count_gemm_search();
// Sets gemm_search for a scope (tests, benchmarks).
class GemmSearchGuard : ScopedValue<int> {
 public:
  explicit GemmSearchGuard(int candidates) : ScopedValue(gemm_search, candidates) {}
};
// The algorithms run.gemm_search chose (or took from use_gemm_choices) in this process, as
// ops/gemm_choices.h's text; "" without a GPU or before any choice. The trainer keeps it in each
// checkpoint.
std::string gemm_choices();
// Has the product shapes that `text` names take its algorithms from now on, without a search,
// where they were chosen with this library on this card (otherwise it says so on stderr and the
// shapes are searched again); a shape's algorithm that cuBLASLt no longer accepts for it
// is searched again too. Returns the count of shapes taken (0 for another library or card, or
// without a GPU). ValueError naming `where` and the line for text that is not that format.
size_t use_gemm_choices(const std::string& text, const std::string& where);
// Forgets every product plan and choice, as a new process starts (tests of resume within one
// process).
void forget_gemm_plans();
// The library and card that choices made now are meaningful to, as the choices' text names it
// ("cublasLt <version> on <device name> (sm_XY, N SMs)"); "" without a GPU.
std::string gemm_library();
// Installed by the CUDA backend (cuda/matmul.cu); null without one.
extern std::string (*gemm_choices_on_device)();
extern std::string (*gemm_library_on_device)();
extern size_t (*use_gemm_choices_on_device)(const std::string& text, const std::string& where);
extern void (*forget_gemm_plans_on_device)();

// The operand a product should read: under Precision::BF16, an f32 CUDA tensor is rounded to a
// bf16 copy once (so an operand used by two products, like a gradient in linear's backward, is
// converted once, and saved activations take half the memory); otherwise t itself. GemmFn
// kernels accept bf16 operands and then always multiply on the tensor cores into an f32 C.
Tensor tensor_core_operand(const Tensor& t);
// Whether tensor_core_operand(t) makes a rounded copy (an f32 CUDA tensor under Precision::BF16).
bool rounds_to_operand(const Tensor& t);


// Where a product's weight gradient goes. Made at the forward from the weight w (N, K): when w is
// a leaf whose gradient buffer (a view into the flat gradients) already exists, the backward's
// product adds g^T x into that buffer in place (C += A B) instead of writing a new (N, K) tensor
// that autograd then adds (one pass over the gradient less per product). linear and gelu_mlp
// use it.
class WeightGradSink {
 public:
  WeightGradSink() = default;
  explicit WeightGradSink(const Tensor& w);
  // w's gradient from g3 (1, rows, N) and x3 (1, rows, K), the product's operands: added into
  // the buffer in place (returns an undefined tensor for autograd) when the buffer is still the
  // one the forward saw, else returned as a new (N, K) tensor. With grad_bias (N), the bias's
  // gradient too, from g (1, rows, N) as it came (weight_bias_grad's row).
  Tensor accumulate(const Tensor& g3, const Tensor& x3, const Tensor& g = Tensor(),
                    Tensor* grad_bias = nullptr) const;
  // A product's weight and bias gradients as a backward needs them: w's (accumulate's result,
  // when want_w) and the bias's (N) in bias_dtype (when want_bias), from one product where both
  // are wanted (weight_bias_grad's row), else the product or bias_grad's row alone.
  // g (1, rows, N) as it came, g3 its operand, x3 (1, rows, K).
  std::pair<Tensor, Tensor> weight_and_bias(const Tensor& g, const Tensor& g3, const Tensor& x3,
                                            bool want_w, bool want_bias,
                                            DType bias_dtype) const;

 private:
  Tensor buffer_;  // (N, K) w's gradient buffer at the forward, or undefined
  Tensor leaf_;    // w, to check at the backward that its gradient is still buffer_
};

}  // namespace sinklab::ops
