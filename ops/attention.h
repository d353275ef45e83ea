// Causal multi-head attention (flash-attention semantics: no T x T matrix is kept for backward).
//
//   attention(q, k, v): q, k, v (B, T, NH, HS) contiguous, one dtype (f32/f64)
//     -> out (B, T, NH, HS), causal: query t sees keys 0..t (fewer where isolated).
//     score_tj = q_t . k_j * scale for the keys query t may see: first_key(t) <= j <= t, where
//     first_key(t) = t for an isolated position t (it attends only to itself, like token 0) and
//     0 otherwise.
//     softmax (default): out_t = sum_j exp(score_tj - lse_t) v_j, lse_t = log sum_j exp(score_tj);
//       lse (B, NH, T) is saved for backward and handed out through lse_out (no grad).
//     sigmoid: out_t = sum_j sigmoid(score_tj) v_j (no row normalisation); *lse_out = Tensor(),
//       or with options.row_sums each query's sum of weights r_t = sum_j sigmoid(score_tj)
//       (B, NH, T), summed by the forward kernels as they go (the sink metrics' row sums).
//   Backward recomputes the probabilities from q, k and lse (dS = P * (dP - D), D_t = dO_t . O_t).
//
// The two probes below carry no gradient. They are for sink metrics, tests and inspection.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

struct AttentionOptions {
  double scale = 0.0;                      // 0 means 1/sqrt(HS)
  bool sigmoid = false;                    // A = sigmoid(q.k * scale) under the causal mask,
                                           // no row normalisation
  std::vector<int64_t> isolate_positions;  // query row k may only attend to key k (no keys < k),
                                           // like token 0
  bool row_sums = false;  // sigmoid only: *lse_out receives r_t = sum_j A[t, j] (B, NH, T)
};

// Whether the model asks sigmoid attention's forward for its row sums on a metrics forward
// (run.sigmoid_row_sums), so that the sink metrics read them instead of running a second
// attention over values of ones (train/metrics/sink_metrics.h, attention_row_means). Read at
// each forward; the trainer sets it once from the config (run.sigmoid_row_sums, true by
// default since its [cuda] cases passed on an H200); off for the library alone, like the other
// process switches a run sets.
extern bool sigmoid_row_sums;
// Sets sigmoid_row_sums for a scope (tests, benchmarks).
class SigmoidRowSumsGuard : ScopedValue<bool> {
 public:
  explicit SigmoidRowSumsGuard(bool on) : ScopedValue(sigmoid_row_sums, on) {}
};

// Which CUDA kernels run causal softmax attention (run.attention_kernels): Auto takes cuDNN's
// fused flash attention where it applies (softmax, the plain causal mask, bf16 operands under
// Precision::BF16, head sizes up to 128) and sinklab's own kernels elsewhere; Own runs the own
// kernels everywhere. The CPU and the own kernels stay the reference the cuDNN path is tested
// against. Read at each call; the trainer sets it once from the config.
enum class AttentionKernels { Auto, Own };
extern AttentionKernels attention_kernels_preference;
// Sets the preference for a scope (tests, benchmarks) and restores it after.
class AttentionKernelsGuard : ScopedValue<AttentionKernels> {
 public:
  explicit AttentionKernelsGuard(AttentionKernels kernels)
      : ScopedValue(attention_kernels_preference, kernels) {}
};
// Whether the attention backward gives the same bits on every run (run.deterministic, default
// true). False lets cuDNN's backward sum dQ over key tiles with f32 atomics (faster: no B*H*T^2
// workspace, no product of its own); the own kernels are deterministic either way. Read at each
// call; the trainer sets it once from the config.
extern bool deterministic_attention;
// What runs causal softmax attention on a GPU under the preference, in one line for the run
// header ("cuDNN 9.14.0 fused attention ..." or why the own kernels run).
std::string attention_kernels_description();
// Installed by the CUDA backend: its description of the Auto choice (null: CUDA not built).
extern std::string (*attention_kernels_auto_description)();

// lse_out, when given, receives the saved log-sum-exp (B, NH, T) in attention_lse_dtype(q): it
// shares storage with what backward uses, so read it, don't write it.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& options = {}, Tensor* lse_out = nullptr);

// attention on a packed qkv (B, T, 3C): q, k, v side by side in each row (C = NH * HS each), as
// GPT-2's c_attn writes them in one product. Same result as attention(q, k, v) on its thirds;
// the gradient is one (B, T, 3C) tensor, so the product's backward is one GEMM and no gradient
// is split or summed. qkv is f32 or f64, or bf16 on a GPU (the product written in bf16 under
// Precision::BF16): the tensor-core kernels then read q, k, v where they lie and write the
// gradient in bf16, and out (B, T, NH, HS) is f32 (attention_lse_dtype), or bf16 where the
// fused kernel runs (attention_qkv_fused_bf16, below). Elsewhere the thirds are copied out,
// attention's kernels run, and the gradients are packed back.
Tensor attention_qkv(const Tensor& qkv, int64_t n_head, const AttentionOptions& options = {},
                     Tensor* lse_out = nullptr);

// Installed by the CUDA backend: true when its fused attention (cuDNN) takes attention_qkv on
// this qkv under these params. attention_qkv's out is then bf16, as the fused kernel writes it
// and as the product after it (c_proj / o_proj) reads it: no widening pass forward, no rounding
// of out and its gradient backward. Null (CPU-only builds): out is attention_lse_dtype(qkv).
struct AttentionParams;
extern bool (*attention_qkv_fused_bf16)(const Tensor& qkv, int64_t n_head,
                                        const AttentionParams& params);

// Part 0 (q), 1 (k) or 2 (v) of a packed qkv (B, T, 3C) as a (B, T, NH, HS) view whose rows are
// 3C apart (no copy, no autograd): what attention_qkv multiplied, for probes and metrics.
Tensor qkv_part(const Tensor& qkv, int64_t n_head, int part);

// Materialised attention probabilities A (B, NH, T, T) (zeros above the diagonal / where
// masked). Small T only: for tests and probes. q and k may be qkv_part views (f32 / f64).
Tensor attention_probabilities(const Tensor& q, const Tensor& k,
                               const AttentionOptions& options = {});

// A[b, h, t, key] for every query t >= key as (B, NH, T) (0 for t < key or where masked),
// computed from the saved lse as exp(q_t . k_key * scale - lse_t) without any T x T matrix
// (sigmoid mode: sigmoid(q_t . k_key * scale), lse ignored and may be undefined).
// lse: (B, NH, T) in attention_lse_dtype(q), as attention() hands it out. q and k may be
// qkv_part views (rows apart by more than NH * HS), bf16 on a GPU; mass has lse's dtype.
Tensor attention_key_mass(const Tensor& q, const Tensor& k, const Tensor& lse, int64_t key,
                          const AttentionOptions& options = {});

// dtype of the saved log-sum-exp: f64 for f64 inputs, f32 otherwise (also for a bf16 GPU path).
inline DType attention_lse_dtype(DType qkv_dtype) {
  return qkv_dtype == DType::F64 ? DType::F64 : DType::F32;
}

// The options resolved once at the op's entry, as every kernel sees them.
struct AttentionParams {
  double scale = 0.0;              // never 0 here
  bool sigmoid = false;
  std::vector<int64_t> first_key;  // (T): query t attends to keys first_key[t] .. t
};

// The operands a forward kernel multiplied, kept for its backward: the CUDA tensor-core path's
// bf16 copies of q, k, v (B, T, NH, HS), so that the backward does not round them again. Left
// empty by kernels that read q, k, v as they are.
struct AttentionOperands {
  Tensor q, k, v;
};

// lse (B, NH, T): softmax writes each row's log-sum-exp into it; sigmoid writes each row's sum
// of weights where lse is defined (AttentionOptions::row_sums) and nothing where it is not.
using AttentionForwardFn = void (*)(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionParams& params, Tensor& out, Tensor& lse,
                                    AttentionOperands& operands);
// Writes dq, dk, dv (all (B, T, NH, HS)); lse is ignored in sigmoid mode; operands are the
// forward's (possibly empty).
using AttentionBackwardFn = void (*)(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& out, const Tensor& lse, const Tensor& grad_out,
                                     const AttentionParams& params,
                                     const AttentionOperands& operands, Tensor& dq, Tensor& dk,
                                     Tensor& dv);
using AttentionProbsFn = void (*)(const Tensor& q, const Tensor& k, const AttentionParams& params,
                                  Tensor& probs);
using AttentionKeyMassFn = void (*)(const Tensor& q, const Tensor& k, const Tensor& lse,
                                    int64_t key, const AttentionParams& params, Tensor& mass);

extern OpKernels<AttentionForwardFn, AttentionBackwardFn> attention_kernels;

// attention_qkv's kernels: out (B, T, NH, HS) and lse from qkv (B, T, 3C); dqkv (B, T, 3C) from
// grad_out. The CPU slots (and the CUDA ones where their tensor-core path does not apply) run
// the _by_parts versions below.
using AttentionQkvForwardFn = void (*)(const Tensor& qkv, const AttentionParams& params,
                                       Tensor& out, Tensor& lse);
using AttentionQkvBackwardFn = void (*)(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                        const Tensor& grad_out, const AttentionParams& params,
                                        Tensor& dqkv);
extern OpKernels<AttentionQkvForwardFn, AttentionQkvBackwardFn> attention_qkv_kernels;
// Through attention_kernels on qkv's device: the thirds copied out contiguous (in out's dtype),
// and dq, dk, dv copied into dqkv (converted to its dtype).
void attention_qkv_forward_by_parts(const Tensor& qkv, const AttentionParams& params, Tensor& out,
                                    Tensor& lse);
void attention_qkv_backward_by_parts(const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                     const Tensor& grad_out, const AttentionParams& params,
                                     Tensor& dqkv);
// The probes have no backward (no-grad by definition): their backward slots stay null.
extern OpKernels<AttentionProbsFn, AttentionProbsFn> attention_probabilities_kernels;
extern OpKernels<AttentionKeyMassFn, AttentionKeyMassFn> attention_key_mass_kernels;

}  // namespace sinklab::ops
