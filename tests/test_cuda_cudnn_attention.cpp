// [cuda] cuDNN's fused attention (ops::AttentionKernels::Auto under Precision::BF16): against the
// CPU reference in f64 on random inputs, forward (out, lse) and backward (dq, dk, dv), through
// ops::attention (f32 q, k, v, LLaMA's path) and ops::attention_qkv (GPT-2's packed bf16 qkv);
// different bits from the own kernels (so cuDNN really ran); bit-identical across two runs (its
// backward is deterministic); the own kernels where the options rule cuDNN out (sigmoid,
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
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;

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

// out, lse, dq, dk, dv of one forward + backward (gradient seed `seed`) with the inputs in
// `dtype` on `device`, as host copies; fresh leaves each call.
std::vector<std::vector<double>> run_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                               const Tensor& seed,
                                               const ops::AttentionOptions& options,
                                               Device device, DType dtype) {
  std::vector<Tensor> in;
  for (const Tensor& t : {q, k, v}) {
    Tensor d = t.detach().to_dtype(dtype).to_device(device);
    d.set_requires_grad(true);
    in.push_back(d);
  }
  Tensor lse;
  Tensor out = ops::attention(in[0], in[1], in[2], options, &lse);
  autograd::backward(out, seed.to_dtype(dtype).to_device(device));
  std::vector<std::vector<double>> r{out.to_doubles()};
  if (lse.defined()) r.push_back(lse.to_doubles());
  for (const Tensor& t : in) r.push_back(t.grad().to_doubles());
  return r;
}

// max |gpu - cpu| <= tol * max(1, max |cpu|) over a whole tensor (bf16 operands: see
// test_cuda_attention.cpp's require_close_to_scale for the reasoning behind 2e-2).
void require_close_to_scale(const std::vector<double>& actual, const std::vector<double>& expected,
                            double tol) {
  REQUIRE(actual.size() == expected.size());
  double scale = 1.0, worst = 0.0;
  for (double x : expected) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < actual.size(); ++i)
    worst = std::max(worst, std::fabs(actual[i] - expected[i]));
  INFO("max |gpu - cpu| = " << worst << ", allowed " << tol * scale);
  REQUIRE(worst <= tol * scale);
}

constexpr double kBf16Tolerance = 2e-2;
const char* kNames[] = {"out", "lse", "dq", "dk", "dv"};

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
      const Tensor q = random_tensor({B, T, NH, HS}, stream, DType::F32);
      const Tensor k = random_tensor({B, T, NH, HS}, stream + 1, DType::F32);
      const Tensor v = random_tensor({B, T, NH, HS}, stream + 2, DType::F32);
      const Tensor seed = random_tensor({B, T, NH, HS}, stream + 3, DType::F32);
      const ops::AttentionOptions softmax;
      const auto cpu = run_attention(q, k, v, seed, softmax, Device::cpu(), DType::F64);
      PrecisionGuard bf16(Precision::BF16);
      std::vector<std::vector<double>> fused, own;
      {
        const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
        fused = run_attention(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
      }
      {
        const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
        own = run_attention(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
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
      const Tensor gpu_out = ops::attention_qkv(gpu_qkv, NH);
      REQUIRE(gpu_out.dtype() == DType::F32);
      require_close_to_scale(gpu_out.to_doubles(), cpu_out.to_doubles(), kBf16Tolerance);
      autograd::backward(ops::sum(ops::mul(cpu_out, w.to_dtype(DType::F64))));
      autograd::backward(ops::sum(ops::mul(gpu_out, w.to_device(Device::cuda()))));
      REQUIRE(gpu_qkv.grad().dtype() == DType::BF16);
      require_close_to_scale(gpu_qkv.grad().to_doubles(), cpu_qkv.grad().to_doubles(),
                             kBf16Tolerance);
    }
}

TEST_CASE("cuda: cuDNN attention is bit-identical across two GPU runs (deterministic backward)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  PrecisionGuard bf16(Precision::BF16);
  const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
  const int64_t B = 4, T = 512, NH = 4, HS = 64;  // many key tiles per query tile
  const Tensor q = random_tensor({B, T, NH, HS}, 3200, DType::F32);
  const Tensor k = random_tensor({B, T, NH, HS}, 3201, DType::F32);
  const Tensor v = random_tensor({B, T, NH, HS}, 3202, DType::F32);
  const Tensor seed = random_tensor({B, T, NH, HS}, 3203, DType::F32);
  const ops::AttentionOptions softmax;
  const auto first = run_attention(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
  {
    const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
    const auto own = run_attention(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
    for (size_t i = 0; i < first.size(); ++i) {
      INFO(kNames[i] << " came from cuDNN");
      REQUIRE(first[i] != own[i]);
    }
  }
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto again = run_attention(q, k, v, seed, softmax, Device::cuda(0), DType::F32);
    REQUIRE(again.size() == first.size());
    for (size_t i = 0; i < first.size(); ++i) {
      INFO(kNames[i] << " run " << repeat + 2);
      REQUIRE(again[i] == first[i]);
    }
  }
}

TEST_CASE("cuda: sigmoid attention and isolated positions keep the own kernels under Auto",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDNN();
  PrecisionGuard bf16(Precision::BF16);
  const int64_t B = 2, T = 130, NH = 3, HS = 64;
  const Tensor q = random_tensor({B, T, NH, HS}, 3300, DType::F32);
  const Tensor k = random_tensor({B, T, NH, HS}, 3301, DType::F32);
  const Tensor v = random_tensor({B, T, NH, HS}, 3302, DType::F32);
  const Tensor seed = random_tensor({B, T, NH, HS}, 3303, DType::F32);
  ops::AttentionOptions sigmoid, isolated;
  sigmoid.sigmoid = true;
  isolated.isolate_positions = {0, 5};
  for (const ops::AttentionOptions& options : {sigmoid, isolated}) {
    INFO((options.sigmoid ? "sigmoid" : "isolate {0, 5}"));
    std::vector<std::vector<double>> fused, own;
    {
      const ops::AttentionKernelsGuard automatic(ops::AttentionKernels::Auto);
      fused = run_attention(q, k, v, seed, options, Device::cuda(0), DType::F32);
    }
    {
      const ops::AttentionKernelsGuard pinned(ops::AttentionKernels::Own);
      own = run_attention(q, k, v, seed, options, Device::cuda(0), DType::F32);
    }
    REQUIRE(fused == own);
  }
}
