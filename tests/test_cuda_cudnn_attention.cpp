// [cuda] cuDNN's fused attention (ops::AttentionKernels::Auto under Precision::BF16): against the
// CPU reference in f64 on random inputs, forward (out, lse) and backward (dq, dk, dv), through
// ops::attention (f32 q, k, v, LLaMA's path) and ops::attention_qkv (GPT-2's packed bf16 qkv);
// different bits from the own kernels (so cuDNN really ran); bit-identical across two runs (its
// backward is deterministic); the atomic-dQ backward (run.deterministic: false) against the CPU;
// the own kernels where the options rule cuDNN out (sigmoid,
// isolated positions). Skipped where no GPU is present, and where cuDNN was not built in.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "core/precision.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "tests/attention_checks.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::attention_results;
using test::kBf16Tolerance;
using test::random_tensor;
using test::require_close_to_scale;

namespace {

// cuDNN is in the build (the CUDA backend describes Auto as cuDNN's attention).
bool cudnn_built() {
  const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
  return ops::attention_kernels_description().rfind("cuDNN", 0) == 0;
}

// Skips the rest of a test without cuDNN (SKIP on Catch2 3, a warning on 2), as without a GPU.
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
#define SINKLAB_REQUIRE_CUDNN()                                           \
  do {                                                                    \
    SINKLAB_REQUIRE_CUDA();                                               \
    if (!cudnn_built()) SKIP("sinklab was built without cuDNN");          \
  } while (0)
#else
#define SINKLAB_REQUIRE_CUDNN()                                           \
  do {                                                                    \
    SINKLAB_REQUIRE_CUDA();                                               \
    if (!cudnn_built()) {                                                 \
      WARN("skipped: sinklab was built without cuDNN");                   \
      return;                                                             \
    }                                                                     \
  } while (0)
#endif

const char* kNames[] = {"out", "lse", "dq", "dk", "dv"};

// q, k, v and the seed of out's gradient: (B, T, NH, HS) f32 each, from streams first..first + 3.
struct AttentionInputs {
  Tensor q, k, v, seed;
};
AttentionInputs random_inputs(int64_t B, int64_t T, int64_t NH, int64_t HS, uint64_t first) {
  return {random_tensor({B, T, NH, HS}, first, DType::F32),
          random_tensor({B, T, NH, HS}, first + 1, DType::F32),
          random_tensor({B, T, NH, HS}, first + 2, DType::F32),
          random_tensor({B, T, NH, HS}, first + 3, DType::F32)};
}

}  // namespace

TEST_CASE("cuda: cuDNN attention matches the CPU, forward, lse and backward (HS 64/128)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  const int64_t B = 2, NH = 3;
  uint64_t stream = 3000;
  for (int64_t HS : {64, 128})
    for (int64_t T : {1, 37, 128, 130, 256, 257}) {
      stream += 4;
      INFO("HS " << HS << " T " << T);
      const auto [q, k, v, seed] = random_inputs(B, T, NH, HS, stream);
      const ops::AttentionOptions softmax;
      const auto cpu = attention_results(q, k, v, seed, softmax, Device::cpu(), DType::F64);
      PrecisionGuard bf16(Precision::BF16);
      std::vector<std::vector<double>> fused, own;
      {
        const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
        fused = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
      }
      {
        const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
        own = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
      }
      REQUIRE(fused.size() == cpu.size());
      for (size_t i = 0; i < fused.size(); ++i) {
        INFO(kNames[i]);
        require_close_to_scale(fused[i], cpu[i], kBf16Tolerance);
      }
      // Other bits than the own kernels' where cuDNN runs: the forward from T = 2, the backward
      // where T is a multiple of 128 (shorter tails go to the own kernels up to cuDNN 9.15.0).
      if (T > 1) REQUIRE(fused[0] != own[0]);
      if (T % 128 == 0)
        for (size_t i = 2; i < fused.size(); ++i) {
          INFO(kNames[i] << " from cuDNN's backward");
          REQUIRE(fused[i] != own[i]);
        }
    }
}

TEST_CASE("cuda: cuDNN attention on a packed bf16 qkv matches the CPU through the op", "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  PrecisionGuard bf16(Precision::BF16);
  const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
  for (int64_t HS : {64, 128})
    for (int64_t T : {37, 128, 257}) {
      const int64_t B = 2, NH = 2;
      INFO("HS " << HS << " T " << T);
      const Tensor values = random_tensor({B, T, 3 * NH * HS}, 3100 + T, DType::F32)
                                .to_dtype(DType::BF16)
                                .to_dtype(DType::F32);  // bf16-exact values
      const Tensor w = random_tensor({B, T, NH, HS}, 3101, DType::F32);
      Tensor cpu_qkv = values.to_dtype(DType::F64).set_requires_grad(true);
      Tensor gpu_qkv =
          values.to_dtype(DType::BF16).to_device(Device::cuda()).set_requires_grad(true);
      const Tensor cpu_out = ops::attention_qkv(cpu_qkv, NH);
      // out in bf16 as cuDNN writes it (ops::attention_qkv_fused_bf16), read by the next
      // product as it is; its gradient comes back in bf16 through to_dtype.
      const Tensor gpu_out = ops::attention_qkv(gpu_qkv, NH);
      REQUIRE(gpu_out.dtype() == DType::BF16);
      require_close_to_scale(gpu_out.to_doubles(), cpu_out.to_doubles(), kBf16Tolerance);
      autograd::backward(ops::sum(ops::mul(cpu_out, w.to_dtype(DType::F64))));
      autograd::backward(ops::sum(
          ops::mul(ops::to_dtype(gpu_out, DType::F32), w.to_device(Device::cuda()))));
      REQUIRE(gpu_qkv.grad().dtype() == DType::BF16);
      require_close_to_scale(gpu_qkv.grad().to_doubles(), cpu_qkv.grad().to_doubles(),
                             kBf16Tolerance);
      const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
      REQUIRE(ops::attention_qkv(gpu_qkv, NH).dtype() == DType::F32);  // the own kernels' out
    }
}

TEST_CASE("cuda: cuDNN attention is bit-identical across two GPU runs (deterministic backward)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  PrecisionGuard bf16(Precision::BF16);
  const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
  const int64_t B = 4, T = 512, NH = 4, HS = 64;  // many key tiles per query tile
  const auto [q, k, v, seed] = random_inputs(B, T, NH, HS, 3200);
  const ops::AttentionOptions softmax;
  const auto first = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
  {
    const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
    const auto own = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
    for (size_t i = 0; i < first.size(); ++i) {
      INFO(kNames[i] << " came from cuDNN");
      REQUIRE(first[i] != own[i]);
    }
  }
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto again = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
    REQUIRE(again.size() == first.size());
    for (size_t i = 0; i < first.size(); ++i) {
      INFO(kNames[i] << " run " << repeat + 2);
      REQUIRE(again[i] == first[i]);
    }
  }
}

TEST_CASE("cuda: cuDNN's atomic-dQ backward (run.deterministic: false) matches the CPU",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  // dQ summed over key tiles with f32 atomics into a workspace sum that cuDNN zeroes: three runs
  // in a row (the pool hands the same workspace back, so a sum left over would double dq), each
  // within bf16 tolerance of the f64 CPU reference; dk and dv as in the deterministic graph; then
  // the packed qkv (GPT-2's) twice.
  const int64_t B = 2, T = 512, NH = 3, HS = 64;  // several key tiles per query tile
  const auto [q, k, v, seed] = random_inputs(B, T, NH, HS, 3250);
  const ops::AttentionOptions softmax;
  const auto cpu = attention_results(q, k, v, seed, softmax, Device::cpu(), DType::F64);
  PrecisionGuard bf16(Precision::BF16);
  const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
  std::vector<std::vector<double>> own;
  {
    const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
    own = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
  }
  const ScopedValue<bool> atomic_dq(ops::deterministic_attention, false);  // run.deterministic
  REQUIRE(ops::attention_kernels_description().find("atomics") != std::string::npos);
  for (int run = 0; run < 3; ++run) {
    const auto atomic = attention_results(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
    REQUIRE(atomic.size() == cpu.size());
    for (size_t i = 0; i < atomic.size(); ++i) {
      INFO(kNames[i] << " run " << run + 1);
      require_close_to_scale(atomic[i], cpu[i], kBf16Tolerance);
      if (i >= 2) REQUIRE(atomic[i] != own[i]);  // cuDNN's backward ran
    }
  }
  // GPT-2's path: the packed bf16 qkv, whose dq is a strided view into the (B, T, 3C) gradient.
  const Tensor values = random_tensor({B, T, 3 * NH * HS}, 3254, DType::F32)
                            .to_dtype(DType::BF16)
                            .to_dtype(DType::F32);  // bf16-exact values
  const Tensor w = random_tensor({B, T, NH, HS}, 3255, DType::F32);
  Tensor cpu_qkv = values.to_dtype(DType::F64).set_requires_grad(true);
  autograd::backward(ops::sum(ops::mul(ops::attention_qkv(cpu_qkv, NH), w.to_dtype(DType::F64))));
  for (int run = 0; run < 2; ++run) {
    INFO("packed qkv, run " << run + 1);
    Tensor gpu_qkv = values.to_dtype(DType::BF16).to_device(Device::cuda()).set_requires_grad(true);
    autograd::backward(ops::sum(ops::mul(ops::to_dtype(ops::attention_qkv(gpu_qkv, NH), DType::F32),
                                         w.to_device(Device::cuda()))));
    require_close_to_scale(gpu_qkv.grad().to_doubles(), cpu_qkv.grad().to_doubles(),
                           kBf16Tolerance);
  }
}

TEST_CASE("cuda: sigmoid attention and isolated positions keep the own kernels under Auto",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  PrecisionGuard bf16(Precision::BF16);
  const int64_t B = 2, T = 130, NH = 3, HS = 64;
  const auto [q, k, v, seed] = random_inputs(B, T, NH, HS, 3300);
  ops::AttentionOptions sigmoid, isolated;
  sigmoid.sigmoid = true;
  isolated.isolate_positions = {0, 5};
  for (const ops::AttentionOptions& options : {sigmoid, isolated}) {
    INFO((options.sigmoid ? "sigmoid" : "isolate {0, 5}"));
    std::vector<std::vector<double>> fused, own;
    {
      const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
      fused = attention_results(q, k, v, seed, options, Device::cuda(0), DType::F32);
    }
    {
      const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
      own = attention_results(q, k, v, seed, options, Device::cuda(0), DType::F32);
    }
    REQUIRE(fused == own);
  }
}
