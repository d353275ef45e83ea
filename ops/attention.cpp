#include "ops/attention.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/attention.h"

namespace sinklab::ops {

OpKernels<AttentionForwardFn, AttentionBackwardFn> attention_kernels{
    "attention", cpu::attention_forward, cpu::attention_backward};
AttentionKernels attention_kernels_preference = AttentionKernels::Own;
bool deterministic_attention = true;
bool sigmoid_row_sums = false;
std::string (*attention_kernels_auto_description)() = nullptr;
bool (*attention_qkv_fused_bf16)(const Tensor&, int64_t, const AttentionParams&) = nullptr;

std::string attention_kernels_description() {
  if (attention_kernels_preference == AttentionKernels::Own)
    return "own attention kernels (run.attention_kernels: own)";
  if (attention_kernels_auto_description == nullptr) return "own attention kernels (no CUDA)";
  const std::string automatic = attention_kernels_auto_description();
  if (automatic.rfind("cuDNN", 0) != 0) return automatic;  // the own kernels: deterministic
  return automatic + (deterministic_attention
                          ? " (deterministic backward)"
                          : " (backward sums dQ with atomics, run.deterministic: false: runs "
                            "may differ in the last bits)");
}

OpKernels<AttentionQkvForwardFn, AttentionQkvBackwardFn> attention_qkv_kernels{
    "attention_qkv", attention_qkv_forward_by_parts, attention_qkv_backward_by_parts};
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

// q and k as attention_key_mass reads them: (B, T, NH, HS) of one shape, dtype (f32/f64, or
// bf16 on a GPU) and device, each with unit strides inside a row (heads HS apart) and rows at
// least NH * HS apart (contiguous, or qkv_part views).
void check_row_strided_qk(const Tensor& q, const Tensor& k, const char* op) {
  check_defined(q, op, "q");
  check_defined(k, op, "k");
  check_float_storage(q, op, "q");
  check_same_dtype(q, k, op);
  check_same_device(q, k, op);
  SINKLAB_CHECK(q.dim() == 4 && k.shape() == q.shape(), ShapeError,
                op << ": q " << shape_str(q.shape()) << " and k " << shape_str(k.shape())
                   << " must both be (B, T, NH, HS)",
                "split the heads first: (B, T, C) -> (B, T, NH, HS)");
  for (const Tensor* t : {&q, &k}) {
    const Shape& st = t->strides();
    const int64_t T = t->size(1), NH = t->size(2), HS = t->size(3);
    SINKLAB_CHECK(st[3] == 1 && st[2] == HS && st[1] >= NH * HS && st[0] == T * st[1],
                  ShapeError,
                  op << ": " << (t == &q ? "q " : "k ") << t->str() << " has strides "
                     << shape_str(st) << "; rows of NH * HS contiguous values are needed",
                  "pass contiguous tensors or qkv_part views");
  }
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
  if (!params.sigmoid || options.row_sums)
    lse = Tensor::empty({B, NH, T}, attention_lse_dtype(q.dtype()), q.device());
  AttentionOperands operands;  // the bf16 copies the GPU's tensor-core path multiplied, or empty
  attention_kernels.forward(q.device())(q, k, v, params, out, lse, operands);
  if (lse_out) *lse_out = lse;
  autograd::record(out, "attention", {q, k, v},
                   [q = q.detach(), k = k.detach(), v = v.detach(), o = out.detach(),
                    lse = params.sigmoid ? Tensor() : lse,  // sigmoid's backward reads none
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

Tensor qkv_part(const Tensor& qkv, int64_t n_head, int part) {
  check_rank(qkv, 3, "qkv_part", "qkv");
  check_contiguous(qkv, "qkv_part", "qkv");
  const int64_t B = qkv.size(0), T = qkv.size(1), C3 = qkv.size(2);
  SINKLAB_CHECK(n_head > 0 && C3 > 0 && C3 % (3 * n_head) == 0 && part >= 0 && part < 3,
                ShapeError,
                "qkv_part: qkv " << qkv.str() << " with " << n_head << " heads, part " << part,
                "qkv is (B, T, 3 * NH * HS); part is 0 (q), 1 (k) or 2 (v)");
  const int64_t HS = C3 / (3 * n_head);
  return qkv.reshape_view({B, T, 3 * n_head, HS}).narrow_view(2, part * n_head, n_head);
}

namespace {
// Part i of qkv (B, T, 3C) as a contiguous (B, T, NH, HS) tensor in dtype: what attention's
// kernels take.
Tensor contiguous_part(const Tensor& qkv, int64_t n_head, int i, DType dtype) {
  return qkv_part(qkv, n_head, i).to_dtype(dtype).contiguous_or_self();
}
}  // namespace

void attention_qkv_forward_by_parts(const Tensor& qkv, const AttentionParams& params, Tensor& out,
                                    Tensor& lse) {
  const int64_t NH = out.size(2);
  const DType dt = out.dtype();
  AttentionOperands operands;  // not kept: the backward splits qkv again
  attention_kernels.forward(qkv.device())(contiguous_part(qkv, NH, 0, dt),
                                          contiguous_part(qkv, NH, 1, dt),
                                          contiguous_part(qkv, NH, 2, dt), params, out, lse,
                                          operands);
}

void attention_qkv_backward_by_parts(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                     const Tensor& grad_out, const AttentionParams& params,
                                     Tensor& dqkv) {
  const int64_t NH = out.size(2);
  const Tensor q = contiguous_part(qkv, NH, 0, out.dtype());  // (B, T, NH, HS) each
  const Tensor k = contiguous_part(qkv, NH, 1, out.dtype());
  const Tensor v = contiguous_part(qkv, NH, 2, out.dtype());
  Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());  // (B, T, NH, HS)
  Tensor dk = Tensor::empty(q.shape(), q.dtype(), q.device());  // (B, T, NH, HS)
  Tensor dv = Tensor::empty(q.shape(), q.dtype(), q.device());  // (B, T, NH, HS)
  attention_kernels.backward(qkv.device())(q, k, v, out, lse, grad_out, params,
                                           AttentionOperands{}, dq, dk, dv);
  const Tensor* grads[3] = {&dq, &dk, &dv};
  for (int i = 0; i < 3; ++i)
    qkv_part(dqkv, NH, i).copy_from(grads[i]->to_dtype(dqkv.dtype()));
}

Tensor attention_qkv(const Tensor& qkv, int64_t n_head, const AttentionOptions& options,
                     Tensor* lse_out) {
  const char* op = "attention_qkv";
  check_defined(qkv, op, "qkv");
  check_float_storage(qkv, op, "qkv");
  check_contiguous(qkv, op, "qkv");
  SINKLAB_CHECK(qkv.dim() == 3 && n_head > 0 && qkv.size(2) > 0 &&
                    qkv.size(2) % (3 * n_head) == 0,
                ShapeError,
                op << ": qkv " << qkv.str() << " with " << n_head << " heads",
                "pass qkv (B, T, 3C) with C = n_head * head size: q, k, v side by side");
  const int64_t B = qkv.size(0), T = qkv.size(1), HS = qkv.size(2) / (3 * n_head);
  const Tensor q_view = qkv_part(qkv, n_head, 0);  // (B, T, NH, HS): the shape params need
  AttentionParams params = resolve(q_view, options, op);
  const DType lse_dtype = attention_lse_dtype(qkv.dtype());
  const bool fused_bf16 = qkv.device().is_cuda() && attention_qkv_fused_bf16 != nullptr &&
                          attention_qkv_fused_bf16(qkv, n_head, params);
  const DType out_dtype = fused_bf16 ? DType::BF16 : lse_dtype;
  Tensor out = Tensor::empty({B, T, n_head, HS}, out_dtype, qkv.device());  // (B, T, NH, HS)
  Tensor lse;                                                                // (B, NH, T)
  if (!params.sigmoid || options.row_sums)
    lse = Tensor::empty({B, n_head, T}, lse_dtype, qkv.device());
  attention_qkv_kernels.forward(qkv.device())(qkv, params, out, lse);
  if (lse_out) *lse_out = lse;
  autograd::record(out, "attention", {qkv},
                   [qkv = qkv.detach(), o = out.detach(),
                    lse = params.sigmoid ? Tensor() : lse,  // sigmoid's backward reads none
                    params = std::move(params)](const Tensor& g) {
                     // (B, T, 3C)
                     Tensor dqkv = Tensor::empty(qkv.shape(), qkv.dtype(), qkv.device());
                     attention_qkv_kernels.backward(qkv.device())(qkv, o, lse, g, params, dqkv);
                     return std::vector<Tensor>{dqkv};
                   });
  return out;
}

Tensor attention_probabilities(const Tensor& q_in, const Tensor& k_in,
                               const AttentionOptions& options) {
  check_row_strided_qk(q_in, k_in, "attention_probabilities");
  // Small T only (a probe): qkv_part views are copied out contiguous.
  const Tensor q = q_in.contiguous_or_self(), k = k_in.contiguous_or_self();
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
  check_row_strided_qk(q, k, op);
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
  SINKLAB_CHECK(k.strides()[1] == q.strides()[1], ShapeError,
                op << ": q " << q.str() << " and k " << k.str() << " have rows "
                   << q.strides()[1] << " and " << k.strides()[1] << " elements apart",
                "pass q and k of one layout (both contiguous, or both qkv_part views)");
  // (B, NH, T)
  Tensor mass = Tensor::empty({B, NH, T}, attention_lse_dtype(q.dtype()), q.device());
  attention_key_mass_kernels.forward(q.device())(q, k, lse, key, params, mass);
  return mass;
}

}  // namespace sinklab::ops
