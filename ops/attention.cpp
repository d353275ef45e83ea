#include "ops/attention.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/attention.h"

namespace sinklab::ops {

OpKernels<AttentionForwardFn, AttentionBackwardFn> attention_kernels{
    "attention", cpu::attention_forward, cpu::attention_backward};
OpKernels<AttentionProbsFn, AttentionProbsFn> attention_probabilities_kernels{
    "attention_probabilities", cpu::attention_probabilities, nullptr};
OpKernels<AttentionKeyMassFn, AttentionKeyMassFn> attention_key_mass_kernels{
    "attention_key_mass", cpu::attention_key_mass, nullptr};

namespace {

// q and k (and v when given) must be contiguous (B, T, NH, HS) tensors of one float dtype and
// device and of one shape.
void check_qkv(const Tensor& q, const Tensor& k, const Tensor* v, const char* op) {
  check_defined(q, op, "q");
  check_defined(k, op, "k");
  if (v) check_defined(*v, op, "v");
  check_float(q, op, "q");
  check_same_dtype(q, k, op);
  check_same_device(q, k, op);
  if (v) {
    check_same_dtype(q, *v, op);
    check_same_device(q, *v, op);
  }
  SINKLAB_CHECK(q.dim() == 4, ShapeError,
                op << ": q " << shape_str(q.shape()) << " must be (B, T, NH, HS)",
                "split the heads first: (B, T, C) -> (B, T, NH, HS) with reshape");
  SINKLAB_CHECK(k.shape() == q.shape() && (!v || v->shape() == q.shape()), ShapeError,
                op << ": q " << shape_str(q.shape()) << ", k " << shape_str(k.shape())
                   << (v ? ", v " + shape_str(v->shape()) : std::string())
                   << " must all have the same shape (B, T, NH, HS)",
                "project q, k and v to the same number of heads and head size");
  check_contiguous(q, op, "q");
  check_contiguous(k, op, "k");
  if (v) check_contiguous(*v, op, "v");
}

// Resolves the scale (0 -> 1/sqrt(HS)) and the per-query first visible key.
AttentionParams resolve(const Tensor& q, const AttentionOptions& options, const char* op) {
  const int64_t T = q.size(1), HS = q.size(3);
  AttentionParams p;
  p.sigmoid = options.sigmoid;
  p.scale = options.scale != 0.0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(HS));
  SINKLAB_CHECK(std::isfinite(p.scale), ValueError,
                op << ": scale " << options.scale << " is not finite",
                "use 0 for the default 1/sqrt(HS) or a finite value");
  p.first_key.assign(T, 0);  // (T): causal, every query sees keys 0..t
  for (int64_t pos : options.isolate_positions) {
    SINKLAB_CHECK(pos >= 0 && pos < T, ValueError,
                  op << ": isolate position " << pos << " is outside [0, T) for T = " << T
                     << " (q " << shape_str(q.shape()) << ")",
                  "isolate positions must index the sequence: 0 <= position < T");
    p.first_key[pos] = pos;  // query pos sees only key pos, like token 0
  }
  return p;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& options, Tensor* lse_out) {
  check_qkv(q, k, &v, "attention");
  AttentionParams params = resolve(q, options, "attention");
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());  // (B, T, NH, HS)
  Tensor lse;                                                     // (B, NH, T), softmax only
  if (!params.sigmoid) lse = Tensor::empty({B, NH, T}, attention_lse_dtype(q.dtype()), q.device());
  AttentionOperands operands;  // the bf16 copies the GPU's tensor-core path multiplied, or empty
  attention_kernels.forward(q.device())(q, k, v, params, out, lse, operands);
  if (lse_out) *lse_out = lse;
  autograd::record(out, "attention", {q, k, v},
                   [q = q.detach(), k = k.detach(), v = v.detach(), o = out.detach(), lse,
                    params = std::move(params), operands](const Tensor& g) {
                     Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());  // (B, T, NH, HS)
                     Tensor dk = Tensor::empty(k.shape(), k.dtype(), k.device());  // (B, T, NH, HS)
                     Tensor dv = Tensor::empty(v.shape(), v.dtype(), v.device());  // (B, T, NH, HS)
                     attention_kernels.backward(q.device())(q, k, v, o, lse, g, params, operands,
                                                            dq, dk, dv);
                     return std::vector<Tensor>{dq, dk, dv};
                   });
  return out;
}

Tensor attention_probabilities(const Tensor& q, const Tensor& k, const AttentionOptions& options) {
  check_qkv(q, k, nullptr, "attention_probabilities");
  const AttentionParams params = resolve(q, options, "attention_probabilities");
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2);
  Tensor probs = Tensor::empty({B, NH, T, T}, q.dtype(), q.device());  // (B, NH, T, T)
  attention_probabilities_kernels.forward(q.device())(q, k, params, probs);
  return probs;
}

Tensor attention_key_mass(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t key,
                          const AttentionOptions& options) {
  const char* op = "attention_key_mass";
  check_qkv(q, k, nullptr, op);
  const AttentionParams params = resolve(q, options, op);
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2);
  SINKLAB_CHECK(key >= 0 && key < T, ValueError,
                op << ": key " << key << " is outside [0, T) for T = " << T << " (q "
                   << shape_str(q.shape()) << ")",
                "pass a key position 0 <= key < T (0 for the first-token sink)");
  if (!params.sigmoid) {
    check_defined(lse, op, "lse");
    check_same_device(q, lse, op);
    check_dtype(lse, attention_lse_dtype(q.dtype()), op, "lse");
    check_shape(lse, {B, NH, T}, op, "lse");
    check_contiguous(lse, op, "lse");
  }
  Tensor mass = Tensor::empty({B, NH, T}, q.dtype(), q.device());  // (B, NH, T)
  attention_key_mass_kernels.forward(q.device())(q, k, lse, key, params, mass);
  return mass;
}

}  // namespace sinklab::ops
