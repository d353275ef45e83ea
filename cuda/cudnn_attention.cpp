// Causal softmax attention on cuDNN's fused flash-attention engine: the forward and backward
// operation graphs (cuda/cudnn_attention.h says which), built once per shape and cached.
#include "cuda/cudnn_attention.h"

#if SINKLAB_HAVE_CUDNN
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/cudnn_graph.h"
#include "cuda/runtime.h"

namespace sinklab::cuda {
namespace {

// Tensor ids of both graphs (the non-virtual ones name variant-pack entries).
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kGradO, kGradQ, kGradK, kGradV, kRowDots, kScale, kNegInf, kOne,
  kGradQSum,  // (B, H, T, D) f32: dQ summed over key tiles (the non-deterministic backward)
  kVirtual = 100  // virtual tensors from here on
};

// The plan of one graph and shape, and the host scalars its variant pack points at.
struct CachedPlan {
  bool ok = false;  // false: no engine took this shape (told once); the caller falls back
  cudnn::GraphBuilder::Plan plan;
};

// Which graph: the forward, the deterministic backward, or the backward that sums dQ with atomics.
enum class Pass { kForward, kBackward, kBackwardAtomicDq };

using PlanKey = std::tuple<Pass, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int64_t, int64_t>;

PlanKey key_of(Pass pass, const SdpaViews& in, const int64_t* grad_strides) {
  const int64_t* g = grad_strides;
  return {pass,          in.B,          in.H,          in.T,          in.D,
          in.strides[0], in.strides[1], in.strides[2], in.strides[3], g ? g[0] : 0,
          g ? g[1] : 0,  g ? g[2] : 0,  g ? g[3] : 0};
}

// Bytes of the f32 (B, H, T, D) dQ sum of the non-deterministic backward, kept after the plan's
// own workspace (256-byte aligned).
int64_t grad_q_sum_bytes(const SdpaViews& in) { return in.B * in.H * in.T * in.D * 4; }
int64_t aligned256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// -inf for masked scores (cuDNN before 9.10 wanted the lowest float instead).
float masked_score() {
  return cudnnGetVersion() >= 91000 ? -std::numeric_limits<float>::infinity()
                                    : std::numeric_limits<float>::lowest();
}

// Dimensions and strides of the (B, H, T, D) operands and the (B, H, T, T) scores.
struct Layout {
  std::vector<int64_t> qkv_dims, qkv_strides;  // (B, H, T, D) as given
  std::vector<int64_t> kt_dims, kt_strides;    // (B, H, D, T): K^T (and V^T) as the products read
  std::vector<int64_t> out_strides;            // (B, T, H, D) contiguous seen as (B, H, T, D)
  std::vector<int64_t> score_dims, score_strides;  // (B, H, T, T)
  std::vector<int64_t> score_t_strides;            // (B, H, T, T) transposed view
  std::vector<int64_t> row_dims, row_strides;      // (B, H, T, 1)
};

Layout layout_of(const SdpaViews& in) {
  const int64_t B = in.B, H = in.H, T = in.T, D = in.D;
  const int64_t* s = in.strides;
  Layout l;
  l.qkv_dims = {B, H, T, D};
  l.qkv_strides = {s[0], s[1], s[2], s[3]};
  l.kt_dims = {B, H, D, T};
  l.kt_strides = {s[0], s[1], s[3], s[2]};
  l.out_strides = {T * H * D, D, H * D, 1};
  l.score_dims = {B, H, T, T};
  l.score_strides = {H * T * T, T * T, T, 1};
  l.score_t_strides = {H * T * T, T * T, 1, T};
  l.row_dims = {B, H, T, 1};
  l.row_strides = {H * T, T, 1, 1};
  return l;
}

// Adds the causal mask to scores x (B, H, T, T): y = row >= column ? x : -inf.
void causal_mask(cudnn::GraphBuilder& g, const Layout& l, int64_t x, int64_t y, int64_t& next) {
  const int64_t row = next++, col = next++, keep = next++;
  g.tensor(row, l.score_dims, l.score_strides, CUDNN_DATA_INT32, true);
  g.tensor(col, l.score_dims, l.score_strides, CUDNN_DATA_INT32, true);
  g.tensor(keep, l.score_dims, l.score_strides, CUDNN_DATA_BOOLEAN, true);
  g.tensor(y, l.score_dims, l.score_strides, CUDNN_DATA_FLOAT, true);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, row, -1, -1, CUDNN_DATA_FLOAT, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, col, -1, -1, CUDNN_DATA_FLOAT, 3);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, keep, col, -1, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, y, kNegInf, keep);
}

cudnn::GraphBuilder::Plan build_forward(const SdpaViews& in) {
  const Layout l = layout_of(in);
  cudnn::GraphBuilder g;
  g.tensor(kQ, l.qkv_dims, l.qkv_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kK, l.kt_dims, l.kt_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kV, l.qkv_dims, l.qkv_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kO, l.qkv_dims, l.out_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kStats, l.row_dims, l.row_strides, CUDNN_DATA_FLOAT, false);
  g.scalar(kScale);
  g.scalar(kNegInf);
  int64_t next = kVirtual;
  const auto scores = [&](cudnnDataType_t dtype) {
    const int64_t uid = next++;
    g.tensor(uid, l.score_dims, l.score_strides, dtype, true);
    return uid;
  };
  const auto rows = [&]() {
    const int64_t uid = next++;
    g.tensor(uid, l.row_dims, l.row_strides, CUDNN_DATA_FLOAT, true);
    return uid;
  };
  const int64_t s = scores(CUDNN_DATA_FLOAT);
  g.matmul(kQ, kK, s);  // Q K^T
  const int64_t scaled = scores(CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_MUL, s, scaled, kScale);
  const int64_t masked = next++;
  causal_mask(g, l, scaled, masked, next);
  const int64_t row_max = rows();
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, row_max);
  const int64_t shifted = scores(CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_SUB, masked, shifted, row_max);
  const int64_t e = scores(CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, e);
  const int64_t row_sum = rows();
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, row_sum);
  const int64_t log_sum = rows();
  g.pointwise(CUDNN_POINTWISE_LOG, row_sum, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, row_max, kStats, log_sum);  // lse = M + log Z
  const int64_t p = scores(CUDNN_DATA_BFLOAT16);
  g.pointwise(CUDNN_POINTWISE_DIV, e, p, row_sum);
  g.matmul(p, kV, kO);  // P V
  return g.build(cudnn::handle(), "attention forward (cuDNN)");
}

// deterministic: dQ = dS K written by a product of its own from dS kept in the workspace
// (B * H * T^2 bf16); otherwise summed over key tiles inside the main kernel with f32 atomics
// into kGradQSum (B * H * T * D f32, zeroed by cuDNN from 9.6 on), then rounded into dQ.
cudnn::GraphBuilder::Plan build_backward(const SdpaViews& in, const int64_t* grad_strides,
                                         bool deterministic) {
  const Layout l = layout_of(in);
  const std::vector<int64_t> gs(grad_strides, grad_strides + 4);
  cudnn::GraphBuilder g;
  g.tensor(kQ, l.qkv_dims, l.qkv_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kK, l.kt_dims, l.kt_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kV, l.kt_dims, l.kt_strides, CUDNN_DATA_BFLOAT16, false);  // V^T
  g.tensor(kO, l.qkv_dims, l.out_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kGradO, l.qkv_dims, l.out_strides, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kStats, l.row_dims, l.row_strides, CUDNN_DATA_FLOAT, false);
  g.tensor(kGradQ, l.qkv_dims, gs, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kGradK, l.qkv_dims, gs, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kGradV, l.qkv_dims, gs, CUDNN_DATA_BFLOAT16, false);
  g.tensor(kRowDots, l.row_dims, l.row_strides, CUDNN_DATA_FLOAT, false);  // rowsum(dO * O)
  g.scalar(kScale);
  g.scalar(kNegInf);
  g.scalar(kOne);
  int64_t next = kVirtual;
  const auto scores = [&](cudnnDataType_t dtype, const std::vector<int64_t>& strides) {
    const int64_t uid = next++;
    g.tensor(uid, l.score_dims, strides, dtype, true);
    return uid;
  };
  // rowsum(dO * O) = D_t, kept in a buffer of ours (kRowDots)
  const int64_t prod = next++;
  g.tensor(prod, l.qkv_dims, l.out_strides, CUDNN_DATA_FLOAT, true);
  g.pointwise(CUDNN_POINTWISE_MUL, kGradO, prod, kO);
  const int64_t dots = next++;
  g.tensor(dots, l.row_dims, l.row_strides, CUDNN_DATA_FLOAT, true);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, dots);
  g.pointwise(CUDNN_POINTWISE_MUL, dots, kRowDots, kOne);
  // P = exp(Q K^T * scale - lse) under the causal mask
  const int64_t s = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.matmul(kQ, kK, s);
  const int64_t scaled = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_MUL, s, scaled, kScale);
  const int64_t shifted = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_SUB, scaled, shifted, kStats);
  const int64_t masked = next++;
  causal_mask(g, l, shifted, masked, next);
  const int64_t p = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_EXP, masked, p);
  // dV = P^T dO
  const int64_t p_t = scores(CUDNN_DATA_BFLOAT16, l.score_t_strides);
  g.reshape(p, p_t);
  g.matmul(p_t, kGradO, kGradV);
  // dS = P * (dO V^T - D) * scale
  const int64_t dp = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.matmul(kGradO, kV, dp);
  const int64_t centred = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, centred, kRowDots);
  const int64_t weighted = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_MUL, centred, weighted, p);
  const int64_t ds = scores(CUDNN_DATA_FLOAT, l.score_strides);
  g.pointwise(CUDNN_POINTWISE_MUL, weighted, ds, kScale);
  // dK = dS^T Q
  const int64_t ds_t = scores(CUDNN_DATA_BFLOAT16, l.score_t_strides);
  g.reshape(ds, ds_t);
  g.matmul(ds_t, kQ, kGradK);
  // dQ = dS K
  const int64_t k_rows = next++;
  g.tensor(k_rows, l.qkv_dims, l.qkv_strides, CUDNN_DATA_FLOAT, true);  // as the frontend
  g.reshape(kK, k_rows);
  if (deterministic) {  // written by the product (no f32 sum, no atomics)
    g.matmul(ds, k_rows, kGradQ);
  } else {
    const int64_t H = in.H, T = in.T, D = in.D;  // the sum is packed (B, H, T, D)
    g.tensor(kGradQSum, l.qkv_dims, {H * T * D, T * D, D, 1}, CUDNN_DATA_FLOAT, false);
    g.matmul(ds, k_rows, kGradQSum);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, kGradQSum, kGradQ);
  }
  return g.build(cudnn::handle(), deterministic ? "attention backward (cuDNN)"
                                                : "attention backward, atomic dQ (cuDNN)");
}

// Plans by shape, built on first use. A shape no engine takes is remembered (and told once).
const CachedPlan& plan_for(Pass pass, const SdpaViews& in, const int64_t* grad_strides) {
  static std::mutex mutex;
  static std::map<PlanKey, CachedPlan> plans;
  std::lock_guard<std::mutex> lock(mutex);
  const PlanKey key = key_of(pass, in, grad_strides);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  CachedPlan cached;
  try {
    cached.plan = pass == Pass::kForward
                      ? build_forward(in)
                      : build_backward(in, grad_strides, pass == Pass::kBackward);
    cached.ok = true;
  } catch (const Error& e) {
    std::fprintf(stderr,
                 "sinklab: cuDNN attention %s not available for B=%lld H=%lld T=%lld D=%lld, "
                 "own kernels run instead: %s\n",
                 pass == Pass::kForward    ? "forward"
                 : pass == Pass::kBackward ? "backward"
                                           : "backward (atomic dQ)",
                 static_cast<long long>(in.B),
                 static_cast<long long>(in.H), static_cast<long long>(in.T),
                 static_cast<long long>(in.D), e.message().c_str());
  }
  return plans.emplace(key, std::move(cached)).first->second;
}

constexpr int64_t kMaxWorkspace = int64_t{4} << 30;  // bytes (GPT-2 124M, B=32: 0.8 GiB)

// A device workspace of at least `bytes` (f32 elements: 4-byte granules, 256-byte aligned pool).
Tensor workspace(int64_t bytes) {
  return Tensor::empty({std::max<int64_t>(1, (bytes + 3) / 4)}, DType::F32, Device::cuda());
}

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool cudnn_attention_built() { return true; }

std::string cudnn_attention_description() {
  return "cuDNN " + cudnn::version_string() +
         " fused attention for causal softmax, own kernels elsewhere";
}

bool cudnn_attention_applies(const SdpaViews& in) {
  // cuDNN's SDPA backward does not take key/value sequences of length 1 (its release notes),
  // and B, H index grid dimensions (PyTorch sends cuDNN at most 65535 of each).
  if (in.D % 8 != 0 || in.D > 128 || in.T < 2 || in.B <= 0 || in.H <= 0 || in.B > 65535 ||
      in.H > 65535)
    return false;
  // 16-byte rows for the engine's vector loads: strides of b, h, t in multiples of 8 elements.
  for (int i = 0; i < 3; ++i)
    if (in.strides[i] % 8 != 0) return false;
  return in.strides[3] == 1 && aligned(in.q) && aligned(in.k) && aligned(in.v);
}

bool cudnn_attention_forward(const SdpaViews& in, double scale, void* o, float* lse) {
  if (!aligned(o) || !aligned(lse)) return false;
  const CachedPlan& cached = plan_for(Pass::kForward, in, nullptr);
  if (!cached.ok) return false;
  float scale_value = static_cast<float>(scale), neg_inf = masked_score();
  Tensor ws = workspace(cached.plan.workspace_bytes);
  cudnn::execute(cudnn::handle(), cached.plan.plan, {kQ, kK, kV, kO, kStats, kScale, kNegInf},
                 {const_cast<void*>(in.q), const_cast<void*>(in.k), const_cast<void*>(in.v), o,
                  lse, &scale_value, &neg_inf},
                 ws.raw_data(), stream(), "attention forward (cuDNN)");
  return true;
}

bool cudnn_attention_backward(const SdpaViews& in, double scale, const void* o,
                              const void* grad_out, const float* lse, void* dq, void* dk,
                              void* dv, const int64_t grad_strides[4], bool deterministic) {
  for (const void* p : {o, grad_out, static_cast<const void*>(lse), static_cast<const void*>(dq),
                        static_cast<const void*>(dk), static_cast<const void*>(dv)})
    if (!aligned(p)) return false;
  for (int i = 0; i < 3; ++i)
    if (grad_strides[i] % 8 != 0) return false;
  if (grad_strides[3] != 1) return false;
  // Up to cuDNN 9.15.0 the backward needs a padding mask when T is not a multiple of 128 (an
  // invalid memory access otherwise, fixed in 9.15.1; cudnn-frontend adds the mask for those
  // versions): the own kernels take those shapes (they read cuDNN's lse as their own).
  if (cudnnGetVersion() <= 91500 && in.T % 128 != 0) return false;
  const Pass pass = deterministic ? Pass::kBackward : Pass::kBackwardAtomicDq;
  const CachedPlan& cached = plan_for(pass, in, grad_strides);
  // The deterministic backward's dP workspace grows as B * H * T^2: past kMaxWorkspace the own
  // kernels (no workspace) run instead of risking the device's memory.
  if (!cached.ok || cached.plan.workspace_bytes > kMaxWorkspace) return false;
  float scale_value = static_cast<float>(scale), neg_inf = masked_score(), one = 1.0f;
  // The plan's workspace, then (atomic dQ) the f32 dQ sum
  const int64_t plan_bytes = aligned256(cached.plan.workspace_bytes);
  const int64_t sum_bytes = deterministic ? 0 : grad_q_sum_bytes(in);
  Tensor ws = workspace(plan_bytes + sum_bytes);
  void* grad_q_sum = static_cast<char*>(ws.raw_data()) + plan_bytes;  // (B, H, T, D) f32
  // Before 9.6 the sum had to be zeroed by the caller (cudnn-frontend does it there too).
  if (!deterministic && cudnnGetVersion() < 90600)
    SINKLAB_CUDA_CHECK(cudaMemsetAsync(grad_q_sum, 0, static_cast<size_t>(sum_bytes), stream()));
  Tensor row_dots = Tensor::empty({in.B, in.H, in.T}, DType::F32, Device::cuda());  // (B, H, T)
  std::vector<int64_t> uids = {kQ,     kK,     kV,     kO,     kGradO,  kStats, kGradQ,
                               kGradK, kGradV, kRowDots, kScale, kNegInf, kOne};
  std::vector<void*> pointers = {const_cast<void*>(in.q),  const_cast<void*>(in.k),
                                 const_cast<void*>(in.v),  const_cast<void*>(o),
                                 const_cast<void*>(grad_out), const_cast<float*>(lse),
                                 dq, dk, dv, row_dots.raw_data(), &scale_value, &neg_inf, &one};
  if (!deterministic) {
    uids.push_back(kGradQSum);
    pointers.push_back(grad_q_sum);
  }
  cudnn::execute(cudnn::handle(), cached.plan.plan, uids, pointers, ws.raw_data(), stream(),
                 "attention backward (cuDNN)");
  return true;
}

}  // namespace sinklab::cuda

#else  // built without cuDNN: every call declines, and the own kernels run

namespace sinklab::cuda {
bool cudnn_attention_built() { return false; }
std::string cudnn_attention_description() {
  return "own attention kernels (built without cuDNN)";
}
bool cudnn_attention_applies(const SdpaViews&) { return false; }
bool cudnn_attention_forward(const SdpaViews&, double, void*, float*) { return false; }
bool cudnn_attention_backward(const SdpaViews&, double, const void*, const void*, const float*,
                              void*, void*, void*, const int64_t[4], bool) {
  return false;
}
}  // namespace sinklab::cuda
#endif  // SINKLAB_HAVE_CUDNN
