// Matrix products on the GPU through cuBLAS (strided batched GEMM).
//   f64, and f32 under Precision::Exact: pedantic fp32/fp64 math (no TF32), so results match the
//     CPU reference to fp32 rounding.
//   f32 under Precision::BF16: the operands are rounded to bf16 into stream-ordered scratch
//     buffers (one pass each) and multiplied on the tensor cores with fp32 accumulation into the
//     f32 output through cuBLASLt (CUBLAS_COMPUTE_32F, bf16 A/B, f32 C). linear's bias rides the
//     product's epilogue (CUBLASLT_EPILOGUE_BIAS): no second pass over the output. A bf16 C
//     (linear's LinearOutput::kOperandDType: the logits, GPT-2's qkv and FFN hidden) takes the
//     same path, written in bf16. Plans (descriptors and the heuristic's algorithm) are cached
//     per shape. run.bf16_gemm: fast (ops::Bf16Gemm::Fast) selects cuBLAS's in-library
//     conversion instead (CUBLAS_COMPUTE_32F_FAST_16BF on the f32 operands), for benchmarking the
//     two against each other.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "core/precision.h"
#include "cuda/check.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"
#include "ops/gemm_choices.h"
#include "ops/matmul.h"
#include "ops/mlp.h"

namespace sinklab::cuda {

namespace {

cublasHandle_t make_handle(cublasMath_t mode) {
  cublasHandle_t created;
  SINKLAB_CUBLAS_CHECK(cublasCreate(&created));
  SINKLAB_CUBLAS_CHECK(cublasSetMathMode(created, mode));
  return created;
}

// Pedantic handle for exact math; a default-math handle for the tensor-core path.
cublasHandle_t handle(bool tensor_cores) {
  static cublasHandle_t pedantic = make_handle(CUBLAS_PEDANTIC_MATH);
  static cublasHandle_t fast = make_handle(CUBLAS_DEFAULT_MATH);
  cublasHandle_t h = tensor_cores ? fast : pedantic;
  SINKLAB_CUBLAS_CHECK(cublasSetStream(h, stream()));
  return h;
}

bool use_fast_16bf() { return ops::bf16_gemm_preference == ops::Bf16Gemm::Fast; }

// out[i] = bf16(in[i]) (round to nearest even), n elements; four per thread (float4 loads) when
// in is 16-byte aligned, else one.
__global__ void round_to_bf16(const float* __restrict__ in, __nv_bfloat16* __restrict__ out,
                              int64_t n, bool vectorized) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (!vectorized) {
    if (t < n) out[t] = __float2bfloat16_rn(in[t]);
    return;
  }
  const int64_t i = t * 4;
  if (i + 3 < n) {
    const float4 v = *reinterpret_cast<const float4*>(in + i);
    out[i] = __float2bfloat16_rn(v.x);
    out[i + 1] = __float2bfloat16_rn(v.y);
    out[i + 2] = __float2bfloat16_rn(v.z);
    out[i + 3] = __float2bfloat16_rn(v.w);
  } else {
    for (int64_t j = i; j < n; ++j) out[j] = __float2bfloat16_rn(in[j]);
  }
}

// out (bf16) = t (f32, contiguous) rounded, same shape, on the compute stream.
void round_to_bf16_cuda(const Tensor& t, Tensor& out) {
  const int64_t n = t.numel();
  if (n == 0) return;
  auto* dst = static_cast<__nv_bfloat16*>(out.raw_data());
  const bool aligned = aligned16({t.raw_data()});
  const unsigned blocks = aligned ? blocks_for((n + 3) / 4) : blocks_for(n);
  round_to_bf16<<<blocks, 256, 0, stream()>>>(t.data<float>(), dst, n, aligned);
  SINKLAB_KERNEL_CHECK("bf16 rounding");
}

// A bf16 copy of the contiguous f32 tensor t.
Tensor bf16_copy(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::BF16, t.device());  // t's shape, bf16
  round_to_bf16_cuda(t, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt: bf16 operands, f32 output, optional bias epilogue.

#define SINKLAB_CUBLASLT_CHECK(expr) SINKLAB_CUBLAS_CHECK(expr)

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t created;
    SINKLAB_CUBLASLT_CHECK(cublasLtCreate(&created));
    return created;
  }();
  return h;
}

constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // what cuBLASLt suggests on Hopper

// One allocation for the life of the process (not per step), shared by every plan.
void* lt_workspace() {
  static void* w = [] {
    void* p = nullptr;
    SINKLAB_CUDA_CHECK(cudaMalloc(&p, kLtWorkspaceBytes));
    return p;
  }();
  return w;
}

// What a product's epilogue does besides writing D (cuBLASLt's epilogues):
//   kBias         D = AB + bias (per row of our C)
//   kGeluAux      D = gelu(AB), aux = AB (the GELU input, for the backward)
//   kGeluAuxBias  D = gelu(AB + bias), aux = AB + bias
//   kDGelu        D = gelu'(aux) * AB
//   kDGeluBGrad   D = gelu'(aux) * AB, bias = the column sums of our D (f32)
//   kDGeluBGrad16 the same with the column sums in bf16 (D's type)
//   kBGradB       D = AB, bias = the sums of our a over the product's k (f32): a weight
//                 gradient's product g^T x gives the bias gradient, the column sums of g
// Append-only: checkpoints name an epilogue by its number (ops/gemm_choices.h).
enum class LtEpilogue {
  kNone, kBias, kGeluAux, kGeluAuxBias, kDGelu, kDGeluBGrad, kDGeluBGrad16, kBGradB
};

// Everything a plan depends on; the bias and aux pointers are set per call.
using LtKey = std::tuple<int64_t, int64_t, int64_t, int64_t, long long, long long, bool, bool,
                         LtEpilogue, bool>;  // batch, M, N, K, stride_a, stride_b, trans_a,
                                             // trans_b, epilogue, bf16 output

constexpr int kMaxGemmSearch = 64;  // run.gemm_search's most (train/config.cpp checks it)

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLAS's A (our b), B, C
  cublasLtMatmulAlgo_t algo{};  // the one the products use
  bool found = false;  // the heuristic returned an algorithm
  // run.gemm_search: the heuristic's candidates, best ranked first (one without a search)
  std::array<cublasLtMatmulAlgo_t, kMaxGemmSearch> candidates{};
  int candidate_count = 0;
  bool chosen = false;  // algo was timed fastest, or given by ops::use_gemm_choices
  // The first call times the candidates: there are several and none was chosen yet.
  bool awaits_search() const { return candidate_count > 1 && !chosen; }
};

// Every plan made in this process, by key (ops::forget_gemm_plans clears it).
std::map<LtKey, LtPlan>& lt_plans() {
  static std::map<LtKey, LtPlan> plans;
  return plans;
}

// Algorithms ops::use_gemm_choices gave for keys, taken by their plans without a search.
std::map<LtKey, cublasLtMatmulAlgo_t>& given_algorithms() {
  static std::map<LtKey, cublasLtMatmulAlgo_t> given;
  return given;
}

cublasLtMatrixLayout_t lt_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                 int64_t batch, long long stride) {
  cublasLtMatrixLayout_t layout;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  const int count = static_cast<int>(batch);
  SINKLAB_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
  const int64_t offset = stride;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof(offset)));
  return layout;
}

// Row-major C (batch, M, N) = op(a) op(b) [+ bias (N) per row] is column-major
// C^T (N, M) = op(b)^T op(a)^T: cuBLAS's A is our b, its B our a, and the bias runs along its rows.
// Makes the plan take `algo` where cuBLASLt accepts it for the plan's shape: true then.
bool take_given_algorithm(LtPlan& plan, const cublasLtMatmulAlgo_t& algo) {
  cublasLtMatmulHeuristicResult_t check{};
  if (cublasLtMatmulAlgoCheck(lt_handle(), plan.desc, plan.a, plan.b, plan.c, plan.c, &algo,
                              &check) != CUBLAS_STATUS_SUCCESS ||
      check.workspaceSize > kLtWorkspaceBytes)
    return false;
  plan.algo = algo;
  plan.chosen = true;
  return true;
}

LtPlan& lt_plan(const LtKey& key) {
  std::map<LtKey, LtPlan>& plans = lt_plans();
  auto found = plans.find(key);
  if (found != plans.end()) return found->second;
  const auto [batch, M, N, K, stride_a, stride_b, ta, tb, epilogue, bf16_out] = key;
  LtPlan plan;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                        &op_b, sizeof(op_b)));
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &op_a, sizeof(op_a)));
  if (epilogue != LtEpilogue::kNone) {
    // Our C's rows are cuBLAS's columns: a bias (or bias gradient) of N runs along D's rows.
    const cublasLtEpilogue_t lt_epilogue = [&] {
      switch (epilogue) {
        case LtEpilogue::kBias: return CUBLASLT_EPILOGUE_BIAS;
        case LtEpilogue::kGeluAux: return CUBLASLT_EPILOGUE_GELU_AUX;
        case LtEpilogue::kGeluAuxBias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
        case LtEpilogue::kDGelu: return CUBLASLT_EPILOGUE_DGELU;
        // cuBLAS's B is our a (g^T in a weight gradient's product): BGRADB sums it over k.
        case LtEpilogue::kBGradB: return CUBLASLT_EPILOGUE_BGRADB;
        default: return CUBLASLT_EPILOGUE_DGELU_BGRAD;  // kDGeluBGrad, kDGeluBGrad16
      }
    }();
    SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &lt_epilogue, sizeof(lt_epilogue)));
    if (epilogue == LtEpilogue::kBias || epilogue == LtEpilogue::kGeluAuxBias ||
        epilogue == LtEpilogue::kDGeluBGrad || epilogue == LtEpilogue::kDGeluBGrad16 ||
        epilogue == LtEpilogue::kBGradB) {
      // cuBLASLt takes an f32 bias with an f32 D and a bias of D's type with a bf16 D; the bias
      // gradient is asked for in f32 first (a combination it may not have: no plan then).
      const cudaDataType_t bias_type =
          bf16_out && epilogue != LtEpilogue::kDGeluBGrad ? CUDA_R_16BF : CUDA_R_32F;
      SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
          plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    }
    if (epilogue != LtEpilogue::kBias && epilogue != LtEpilogue::kBGradB) {  // the aux matrix
      const int64_t aux_ld = N;
      SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
          plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
    }
  }
  // Stored (column-major) shapes: our b is (N, K) col-major when not transposed, else (K, N).
  plan.a = tb ? lt_layout(CUDA_R_16BF, K, N, K, batch, stride_b)
              : lt_layout(CUDA_R_16BF, N, K, N, batch, stride_b);
  plan.b = ta ? lt_layout(CUDA_R_16BF, M, K, M, batch, stride_a)
              : lt_layout(CUDA_R_16BF, K, M, K, batch, stride_a);
  plan.c = lt_layout(bf16_out ? CUDA_R_16BF : CUDA_R_32F, N, M, N, batch, M * N);
  cublasLtMatmulPreference_t preference;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const size_t workspace = kLtWorkspaceBytes;
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
      preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  // The heuristic's first, or its first ops::gemm_search for the first call to time.
  cublasLtMatmulHeuristicResult_t results[kMaxGemmSearch] = {};
  const int requested = std::clamp(ops::gemm_search, 1, kMaxGemmSearch);
  int returned = 0;
  // A combination this cuBLASLt does not support (e.g. an epilogue with some output type) is
  // reported as an error status here: no plan then, the caller falls back.
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      lt_handle(), plan.desc, plan.a, plan.b, plan.c, plan.c, preference,
      requested, results, &returned);
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmulPreferenceDestroy(preference));
  plan.found = status == CUBLAS_STATUS_SUCCESS && returned > 0;
  if (plan.found) {
    plan.algo = results[0].algo;
    for (int i = 0; i < returned; ++i) plan.candidates[i] = results[i].algo;
    plan.candidate_count = returned;
    const auto given = given_algorithms().find(key);
    if (given != given_algorithms().end()) take_given_algorithm(plan, given->second);
  }
  return plans.emplace(key, plan).first->second;
}

// run.gemm_search: times each of the plan's candidates on this call's operands (a warm-up, then
// three runs between two events on the compute stream) and keeps the fastest in plan.algo. C is
// written by the runs unless the call accumulates (beta 1): then they write a scratch C, and the
// caller's product afterwards writes C (and the epilogue's aux or bias outputs, which the runs
// also wrote) once with the chosen algorithm. Not while the stream is captured into a graph:
// there the heuristic's first becomes the plan's choice, so that what the graph records is what
// every later call of the shape runs (and what the choices' text then holds).
void search_algorithm(LtPlan& plan, const LtKey& key, const void* a, const void* b, Tensor& c,
                      float beta) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  SINKLAB_CUDA_CHECK(cudaStreamIsCapturing(stream(), &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    plan.chosen = true;  // plan.algo: the heuristic's first
    return;
  }
  // (batch, M, N) in c's dtype: the runs' output when C must not change
  Tensor scratch = beta != 0.f ? Tensor::empty(c.shape(), c.dtype(), c.device()) : Tensor();
  void* out = beta != 0.f ? scratch.raw_data() : c.raw_data();
  const float alpha = 1.0f;
  struct Event {  // destroyed however the search ends
    cudaEvent_t e = nullptr;
    Event() { SINKLAB_CUDA_CHECK(cudaEventCreate(&e)); }
    ~Event() { cudaEventDestroy(e); }
  } start_event, stop_event;
  const cudaEvent_t start = start_event.e, stop = stop_event.e;
  constexpr int kRuns = 3;
  float us[kMaxGemmSearch];  // a run of each candidate; -1: it failed
  int best = 0;
  for (int i = 0; i < plan.candidate_count; ++i) {
    us[i] = -1.f;
    auto run = [&] {
      return cublasLtMatmul(lt_handle(), plan.desc, &alpha, b, plan.a, a, plan.b, &beta, out,
                            plan.c, out, plan.c, &plan.candidates[i], lt_workspace(),
                            kLtWorkspaceBytes, stream());
    };
    if (run() != CUBLAS_STATUS_SUCCESS) continue;  // a candidate this call cannot run
    SINKLAB_CUDA_CHECK(cudaEventRecord(start, stream()));
    bool ran = true;
    for (int r = 0; r < kRuns; ++r) ran = ran && run() == CUBLAS_STATUS_SUCCESS;
    SINKLAB_CUDA_CHECK(cudaEventRecord(stop, stream()));
    SINKLAB_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    SINKLAB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (!ran) continue;
    us[i] = 1000.f * ms / kRuns;
    if (us[best] < 0 || us[i] < us[best]) best = i;
  }
  if (us[best] >= 0) plan.algo = plan.candidates[best];
  plan.chosen = true;
  ops::count_gemm_search();
  const auto [batch, M, N, K, stride_a, stride_b, ta, tb, epilogue, bf16_out] = key;
  char first[32], chosen[32];  // a time, or "failed"
  auto time_of = [](float t, char (&out)[32]) {
    if (t < 0)
      std::snprintf(out, sizeof out, "failed");
    else
      std::snprintf(out, sizeof out, "%.1f us", t);
  };
  time_of(us[0], first);
  time_of(us[best], chosen);
  std::fprintf(stderr,
               "gemm search: (%lld x) %lld x %lld x %lld%s%s, epilogue %d: the heuristic's first "
               "%s, candidate %d of %d %s\n",
               static_cast<long long>(batch), static_cast<long long>(M), static_cast<long long>(N),
               static_cast<long long>(K), ta ? ", a^T" : "", tb ? ", b^T" : "",
               static_cast<int>(epilogue), first, best + 1, plan.candidate_count, chosen);
}

// c (batch, M, N) f32 or bf16 = op(a16) op(b16) (+ c when accumulate), then the epilogue:
// bias (N) per row (f32 for an f32 c, bf16 for a bf16 c; the bias gradient's output, f32, for
// kDGeluBGrad) and aux (batch, M, N) in c's dtype (GELU's input: written by kGeluAux*, read by
// kDGelu*). a16/b16 bf16, fp32 accumulation. False when cuBLASLt has no algorithm for the shape
// and epilogue, or an operand is not 256-byte aligned (the caller falls back).
bool lt_gemm(const Tensor& a16, bool ta, const Tensor& b16, bool tb, Tensor& c, bool accumulate,
             LtEpilogue epilogue = LtEpilogue::kNone, const void* bias = nullptr,
             const void* aux = nullptr) {
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2);
  const int64_t K = ta ? a16.size(1) : a16.size(2);
  const long long stride_a = a16.size(0) == 1 ? 0 : M * K;
  const long long stride_b = b16.size(0) == 1 ? 0 : K * N;
  // The plans assume cuBLASLt's default 256-byte operand alignment (fresh allocations); views
  // that start elsewhere (a narrowed bias, a sliced operand) take the fallback instead.
  for (const void* p : {a16.raw_data(), b16.raw_data(), static_cast<const void*>(c.raw_data()),
                        bias, aux})
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 256 != 0) return false;
  // The aux matrix's leading dimension (N) must be a multiple of 8; the plans set no batch
  // strides for the aux matrix or a bias gradient, so those epilogues take one product.
  const bool with_aux = epilogue != LtEpilogue::kNone && epilogue != LtEpilogue::kBias &&
                        epilogue != LtEpilogue::kBGradB;
  if (with_aux && N % 8 != 0) return false;
  if (epilogue != LtEpilogue::kNone && epilogue != LtEpilogue::kBias && batch != 1) return false;
  const LtKey key{batch, M, N, K, stride_a, stride_b, ta, tb, epilogue, c.dtype() == DType::BF16};
  LtPlan& plan = lt_plan(key);
  if (!plan.found) return false;
  if (bias)
    SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  if (aux)
    SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  if (plan.awaits_search()) search_algorithm(plan, key, a16.raw_data(), b16.raw_data(), c, beta);
  SINKLAB_CUBLASLT_CHECK(cublasLtMatmul(lt_handle(), plan.desc, &alpha, b16.raw_data(), plan.a,
                                        a16.raw_data(), plan.b, &beta, c.raw_data(), plan.c,
                                        c.raw_data(), plan.c, &plan.algo, lt_workspace(),
                                        kLtWorkspaceBytes, stream()));
  return true;
}

// Row-major C (M, N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
void batched_gemm_cuda(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                       bool accumulate) {
  const int64_t batch = c.size(0), M = c.size(1), N = c.size(2);
  const int64_t K = trans_a ? a.size(1) : a.size(2);
  const long long stride_a = a.size(0) == 1 ? 0 : M * K;
  const long long stride_b = b.size(0) == 1 ? 0 : K * N;
  const long long stride_c = M * N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = static_cast<int>(trans_b ? K : N), lda = static_cast<int>(trans_a ? M : K);
  const bool bf16_operand = a.dtype() == DType::BF16 || b.dtype() == DType::BF16;
  const bool bf16_out = c.dtype() == DType::BF16;  // linear's LinearOutput::kOperandDType
  if (bf16_out ||
      (c.dtype() == DType::F32 && (bf16_operand || cuda_precision() == Precision::BF16))) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (!bf16_operand && !bf16_out && use_fast_16bf()) {
      SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          handle(true), op_b, op_a, static_cast<int>(N), static_cast<int>(M),
          static_cast<int>(K), &alpha, b.data<float>(), CUDA_R_32F, ldb, stride_b,
          a.data<float>(), CUDA_R_32F, lda, stride_a, &beta, c.data<float>(), CUDA_R_32F,
          static_cast<int>(N), stride_c, static_cast<int>(batch), CUBLAS_COMPUTE_32F_FAST_16BF,
          CUBLAS_GEMM_DEFAULT));
      return;
    }
    // bf16 operands as given, or rounded here (one pass each) when they come as f32.
    const Tensor a16 = a.dtype() == DType::BF16 ? a : bf16_copy(a);  // a's shape, bf16
    const Tensor b16 = b.dtype() == DType::BF16 ? b : bf16_copy(b);  // b's shape, bf16
    if (lt_gemm(a16, trans_a, b16, trans_b, c, accumulate)) return;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(true), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b16.raw_data(), CUDA_R_16BF, ldb, stride_b, a16.raw_data(), CUDA_R_16BF, lda,
        stride_a, &beta, c.raw_data(), bf16_out ? CUDA_R_16BF : CUDA_R_32F,
        static_cast<int>(N), stride_c, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  } else if (c.dtype() == DType::F32) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(false), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<float>(), CUDA_R_32F, ldb, stride_b, a.data<float>(), CUDA_R_32F, lda,
        stride_a, &beta, c.data<float>(), CUDA_R_32F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
  } else {
    const double alpha = 1.0, beta = accumulate ? 1.0 : 0.0;
    SINKLAB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle(false), op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
        &alpha, b.data<double>(), CUDA_R_64F, ldb, stride_b, a.data<double>(), CUDA_R_64F, lda,
        stride_a, &beta, c.data<double>(), CUDA_R_64F, static_cast<int>(N), stride_c,
        static_cast<int>(batch), CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
  }
}

// y (1, rows, N) = x (1, rows, K) @ w (1, N, K)^T + bias: one cuBLASLt call with the bias
// epilogue on the tensor-core path; the product then the broadcast add otherwise.
// A bf16 y (LinearOutput::kOperandDType) with a bias: the bias rounded to bf16 (as autocast
// does; cuBLASLt's epilogue takes a bias of D's type), added to the f32 accumulators, the sum
// rounded once; where cuBLASLt has no such algorithm, an f32 product with the f32 bias, rounded
// in a second pass (the two differ by the bias's own rounding; fresh operands, as linear passes
// them, always find the epilogue on sm_90).
void linear_forward_cuda(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const bool bf16_out = y.dtype() == DType::BF16;
  const bool tensor_cores = bf16_out || (y.dtype() == DType::F32 &&
                                         (x.dtype() == DType::BF16 ||
                                          cuda_precision() == Precision::BF16) &&
                                         !use_fast_16bf());
  if (tensor_cores && bias.defined()) {
    const Tensor x16 = x.dtype() == DType::BF16 ? x : bf16_copy(x);  // (1, rows, K) bf16
    const Tensor w16 = w.dtype() == DType::BF16 ? w : bf16_copy(w);  // (1, N, K) bf16
    const Tensor bias_in_y = bf16_out ? bf16_copy(bias) : bias;  // (N) y's dtype
    if (lt_gemm(x16, false, w16, true, y, false, LtEpilogue::kBias, bias_in_y.raw_data()))
      return;
    if (bf16_out) {
      Tensor y32 = Tensor::empty(y.shape(), DType::F32, y.device());  // (1, rows, N)
      if (!lt_gemm(x16, false, w16, true, y32, false, LtEpilogue::kBias, bias.data<float>())) {
        batched_gemm_cuda(x16, false, w16, true, y32, false);
        ops::add_kernels.cuda_forward(y32, bias, y32);
      }
      round_to_bf16_cuda(y32, y);
      return;
    }
  }
  batched_gemm_cuda(x, false, w, true, y, false);  // also a bf16 y without a bias
  if (bias.defined()) ops::add_kernels.cuda_forward(y, bias, y);  // elementwise: in place is safe
}

// ---------------------------------------------------------------------------------------------
// GPT-2's FFN products with GELU in cuBLASLt's epilogues (ops/mlp.h), where the switch is on,
// pre is bf16 and cuBLASLt has the epilogue; the composed rows otherwise.

// Whether the epilogue path may run for this product (`needed` or more allowed by the switch):
// bf16 operands, and a bf16 D and aux (the aux matrix takes D's type).
bool gelu_epilogue_applies(ops::GemmEpilogues needed, const Tensor& x16, const Tensor& w16,
                           const Tensor& pre, const Tensor& d) {
  return ops::gemm_epilogues >= needed && pre.dtype() == DType::BF16 &&
         d.dtype() == DType::BF16 && x16.dtype() == DType::BF16 && w16.dtype() == DType::BF16;
}

// pre (1, rows, F) = x w^T + bias, hidden = gelu(pre): hidden is D, pre the aux output.
void gelu_linear_cuda(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& pre,
                      Tensor& hidden) {
  if (gelu_epilogue_applies(ops::GemmEpilogues::Forward, x, w, pre, hidden)) {
    const Tensor bias16 = bias.defined() ? bf16_copy(bias) : Tensor();  // (F) bf16, as autocast
    if (lt_gemm(x, false, w, true, hidden, false,
                bias.defined() ? LtEpilogue::kGeluAuxBias : LtEpilogue::kGeluAux,
                bias.defined() ? bias16.raw_data() : nullptr, pre.raw_data()))
      return;
  }
  ops::gelu_linear_composed(x, w, bias, pre, hidden);
}

// grad_pre (1, rows, F) = gelu'(pre) (g w), g (1, rows, C), w (1, C, F); grad_bias (F) f32 its
// column sums, from the epilogue: in f32 where cuBLASLt gives an f32 bias gradient with a bf16
// D, else in bf16 and widened (as autocast's bias gradient, which is bf16: 2^-9 relative), else
// summed by bias_grad's kernel from grad_pre.
void gelu_grad_product_cuda(const Tensor& g, const Tensor& w, const Tensor& pre,
                            Tensor& grad_pre, Tensor* grad_bias) {
  if (gelu_epilogue_applies(ops::GemmEpilogues::ForwardBackward, g, w, pre, grad_pre)) {
    if (grad_bias && grad_bias->dtype() == DType::F32) {
      // f32 sums first: cuBLASLt documents a bias of D's type for a bf16 D, so its heuristic
      // is expected to refuse this (no plan: the bf16 sums below); where it accepts the
      // explicit f32 BIAS_DATA_TYPE, the sums are written in f32.
      if (lt_gemm(g, false, w, false, grad_pre, false, LtEpilogue::kDGeluBGrad,
                  grad_bias->raw_data(), pre.raw_data()))
        return;
      Tensor sums16 = Tensor::empty(grad_bias->shape(), DType::BF16, g.device());  // (F)
      if (lt_gemm(g, false, w, false, grad_pre, false, LtEpilogue::kDGeluBGrad16,
                  sums16.raw_data(), pre.raw_data())) {
        convert_elements(sums16.raw_data(), DType::BF16, grad_bias->raw_data(), DType::F32,
                         sums16.numel());
        return;
      }
    }
    if (lt_gemm(g, false, w, false, grad_pre, false, LtEpilogue::kDGelu, nullptr,
                pre.raw_data())) {
      if (grad_bias) {
        const Tensor rows = grad_pre.reshape_view({grad_pre.size(1), grad_pre.size(2)});
        ops::bias_grad_kernels.cuda_forward(rows, *grad_bias);  // (rows, F) -> (F)
      }
      return;
    }
  }
  ops::gelu_grad_product_composed(g, w, pre, grad_pre, grad_bias);
}

// gw (1, N, K) (+)= g3^T x3 with grad_bias (N) f32 = the column sums of g3 (ForwardBiasGrad or
// more, bf16 operands, an f32 gw): in the product's BGRADB epilogue, or with
// ops::bias_grad_columns by the column-sum kernel after a plain product; else the composed row.
void weight_bias_grad_cuda(const Tensor& g, const Tensor& g3, const Tensor& x3, Tensor& gw,
                           bool accumulate, Tensor& grad_bias) {
  const bool from_operand = ops::gemm_epilogues >= ops::GemmEpilogues::ForwardBiasGrad &&
                            g3.dtype() == DType::BF16 && x3.dtype() == DType::BF16 &&
                            gw.dtype() == DType::F32 && grad_bias.dtype() == DType::F32;
  if (from_operand && ops::bias_grad_columns) {
    batched_gemm_cuda(g3, true, x3, false, gw, accumulate);
    ops::bias_grad_kernels.cuda_forward(g3, grad_bias);  // (1, rows, N) bf16 -> (N) f32
    return;
  }
  if (from_operand &&
      lt_gemm(g3, true, x3, false, gw, accumulate, LtEpilogue::kBGradB, grad_bias.raw_data()))
    return;
  ops::weight_bias_grad_composed(g, g3, x3, gw, accumulate, grad_bias);
}

// The library and the card the choices are made with: "cublasLt <version> on <device name>
// (sm_XY, N SMs)" (cuBLAS keeps an algorithm's sums only on one architecture and SM count).
std::string gemm_library() {
  int device = 0;
  SINKLAB_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  SINKLAB_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return "cublasLt " + std::to_string(cublasLtGetVersion()) + " on " + prop.name + " (sm_" +
         std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs)";
}

// ops::gemm_choices: every plan whose algorithm was chosen (timed fastest, or given).
std::string gemm_choices_cuda() {
  static_assert(
      sizeof(cublasLtMatmulAlgo_t) == std::tuple_size_v<decltype(ops::GemmChoice::algorithm)>,
      "cuBLASLt's algorithm is 64 opaque bytes");
  ops::GemmChoices out;
  auto add = [&](const LtKey& key, const cublasLtMatmulAlgo_t& algo) {
    const auto [batch, M, N, K, stride_a, stride_b, ta, tb, epilogue, bf16_out] = key;
    ops::GemmChoice g;
    g.shape = {batch,    M,  N,  K, stride_a, stride_b, ta, tb, static_cast<int64_t>(epilogue),
               bf16_out};
    std::memcpy(g.algorithm.data(), &algo, g.algorithm.size());
    out.choices.push_back(g);
  };
  for (const auto& [key, plan] : lt_plans())
    if (plan.chosen) add(key, plan.algo);
  // Given ones this process has not multiplied yet: a later resume may (a final evaluation's).
  for (const auto& [key, algo] : given_algorithms())
    if (lt_plans().count(key) == 0) add(key, algo);
  if (out.choices.empty()) return "";
  out.library = gemm_library();
  return ops::format_gemm_choices(out);
}

// ops::use_gemm_choices: the shapes' algorithms, for plans made from now on and those made.
size_t use_gemm_choices_cuda(const std::string& text, const std::string& where) {
  const ops::GemmChoices given = ops::parse_gemm_choices(text, where);
  if (given.choices.empty()) return 0;
  const std::string library = gemm_library();
  if (given.library != library) {
    std::fprintf(stderr,
                 "gemm choices in %s were made with %s; this process has %s: its products "
                 "search again (run.gemm_search)\n",
                 where.c_str(), given.library.c_str(), library.c_str());
    return 0;
  }
  for (const ops::GemmChoice& g : given.choices)  // every line checked before any is taken
    SINKLAB_CHECK(g.shape[8] >= 0 && g.shape[8] <= static_cast<int64_t>(LtEpilogue::kBGradB),
                  ValueError,
                  "gemm choices in " << where << ": epilogue " << g.shape[8]
                                     << " is not one this build knows (0 to "
                                     << static_cast<int>(LtEpilogue::kBGradB) << ")",
                  "use the build that wrote them, or run.gemm_search: 0 (a run folder's "
                  "gemm_choices file may be deleted: the run then searches again)");
  for (const ops::GemmChoice& g : given.choices) {
    const auto& v = g.shape;  // batch, M, N, K, stride_a, stride_b, ta, tb, epilogue, bf16_out
    const LtKey key{v[0], v[1], v[2], v[3], v[4], v[5], v[6] != 0, v[7] != 0,
                    static_cast<LtEpilogue>(v[8]), v[9] != 0};
    cublasLtMatmulAlgo_t algo;
    std::memcpy(&algo, g.algorithm.data(), g.algorithm.size());
    given_algorithms()[key] = algo;
    const auto made = lt_plans().find(key);
    if (made != lt_plans().end() && made->second.found) take_given_algorithm(made->second, algo);
  }
  return given.choices.size();
}

// ops::forget_gemm_plans: as a new process starts.
void forget_gemm_plans_cuda() {
  for (auto& [key, plan] : lt_plans()) {
    if (plan.desc) SINKLAB_CUBLASLT_CHECK(cublasLtMatmulDescDestroy(plan.desc));
    for (cublasLtMatrixLayout_t layout : {plan.a, plan.b, plan.c})
      if (layout) SINKLAB_CUBLASLT_CHECK(cublasLtMatrixLayoutDestroy(layout));
  }
  lt_plans().clear();
  given_algorithms().clear();
}

}  // namespace

void install_matmul_kernels() {
  ops::gemm_choices_on_device = gemm_choices_cuda;
  ops::gemm_library_on_device = gemm_library;
  ops::use_gemm_choices_on_device = use_gemm_choices_cuda;
  ops::forget_gemm_plans_on_device = forget_gemm_plans_cuda;
  ops::linear_kernels.cuda_forward = linear_forward_cuda;
  ops::bf16_round_kernels.cuda_forward = round_to_bf16_cuda;
  ops::matmul_kernels.cuda_forward = batched_gemm_cuda;
  ops::matmul_kernels.cuda_backward = batched_gemm_cuda;
  ops::gelu_linear_kernels.cuda_forward = gelu_linear_cuda;
  ops::weight_bias_grad_kernels.cuda_forward = weight_bias_grad_cuda;
  ops::gelu_grad_product_kernels.cuda_forward = gelu_grad_product_cuda;
  // The bias gradient is a column sum: the same kernel as add's broadcast backward.
  ops::bias_grad_kernels.cuda_forward = [](const Tensor& g, Tensor& gb) {
    ops::add_kernels.cuda_backward(g, nullptr, gb);
  };
  ops::bias_grad_kernels.cuda_backward = ops::bias_grad_kernels.cuda_forward;
}

}  // namespace sinklab::cuda
