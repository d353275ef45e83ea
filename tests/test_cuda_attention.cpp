// [cuda] attention (flash forward/backward, softmax and sigmoid, isolated positions), its probes
// (saved lse, key mass, materialised probabilities), rope, rope_qkv (also bf16, within one bf16
// rounding; also across thetas, T and offsets, for its cached angle tables) and cross-entropy
// against the CPU reference on random inputs, forward and backward;
// bit-identical results across two GPU runs; a bad cross-entropy target as a ValueError; the
// tensor-core attention (f32 under Precision::BF16, HS 64/128) against the CPU with bf16
// tolerances, where it applies, and its determinism. Every case pins the own kernels
// (ops::AttentionKernels::Own); cuDNN's fused attention has its own cases in
// test_cuda_cudnn_attention.cpp. Skipped where no GPU is present.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "core/precision.h"
#include "core/random.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/rope.h"
#include "ops/shape_ops.h"
#include "tests/attention_checks.h"
#include "tests/cuda_compare.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::CudaCompareOptions;
using test::dtype_label;
using test::attention_results;
using test::kBf16Tolerance;
using test::require_close_to_scale;
using test::tolerance;
using test::random_tensor;
using test::require_close;
using test::require_cuda_matches_cpu;
using test::require_error;

namespace {



ops::AttentionOptions make_options(bool sigmoid, const std::vector<int64_t>& isolate,
                                   double scale = 0.0) {
  ops::AttentionOptions o;
  o.sigmoid = sigmoid;
  o.isolate_positions = isolate;
  o.scale = scale;
  return o;
}

// The isolate positions {0, 3} that exist for a sequence of T positions.
std::vector<int64_t> isolate_for(int64_t T, bool on) {
  std::vector<int64_t> out;
  if (!on) return out;
  for (int64_t pos : {0, 3})
    if (pos < T) out.push_back(pos);
  return out;
}

std::string describe(DType dt, int64_t T, int64_t HS, bool sigmoid, size_t isolated) {
  return std::string(dtype_label(dt)) + " T=" + std::to_string(T) + " HS=" + std::to_string(HS) +
         (sigmoid ? " sigmoid" : " softmax") + " isolated=" + std::to_string(isolated);
}

// Host copies of everything one GPU attention forward + backward produces: out, lse (softmax),
// dq, dk, dv. Fresh leaves each call.
std::vector<std::vector<double>> gpu_attention_run(const Tensor& q, const Tensor& k,
                                                   const Tensor& v,
                                                   const ops::AttentionOptions& options) {
  std::vector<Tensor> in;
  for (const Tensor& t : {q, k, v}) {
    Tensor d = t.detach().to_device(Device::cuda(0));
    d.set_requires_grad(true);
    in.push_back(d);
  }
  Tensor lse;
  Tensor out = ops::attention(in[0], in[1], in[2], options, &lse);
  Tensor seed = randn(out.shape(), RngKey{79, 3, 0}, 1.0, out.dtype()).to_device(Device::cuda(0));
  autograd::backward(out, seed);
  std::vector<std::vector<double>> r;
  r.push_back(out.to_doubles());
  if (lse.defined()) r.push_back(lse.to_doubles());
  for (const Tensor& t : in) r.push_back(t.grad().to_doubles());
  return r;
}


const char* result_name(size_t i, bool has_lse) {
  static const char* with_lse[] = {"out", "lse", "dq", "dk", "dv"};
  static const char* without[] = {"out", "dq", "dk", "dv"};
  return has_lse ? with_lse[i] : without[i];
}

}  // namespace

TEST_CASE("cuda: attention matches the CPU, forward and backward (softmax, sigmoid, isolate)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t B = 2, NH = 3;
  uint64_t stream = 300;
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t T : {1, 7, 64, 130, 257})
      for (int64_t HS : {5, 32, 64, 128}) {
        stream += 3;
        Tensor q = random_tensor({B, T, NH, HS}, stream, dt, 1.0, true);
        Tensor k = random_tensor({B, T, NH, HS}, stream + 1, dt, 1.0, true);
        Tensor v = random_tensor({B, T, NH, HS}, stream + 2, dt, 1.0, true);
        for (bool sigmoid : {false, true})
          for (bool isolate : {false, true}) {
            const ops::AttentionOptions o = make_options(sigmoid, isolate_for(T, isolate));
            INFO(describe(dt, T, HS, sigmoid, o.isolate_positions.size()));
            require_cuda_matches_cpu(
                [o](const auto& in) { return ops::attention(in[0], in[1], in[2], o); },
                {q, k, v}, tolerance(dt));
          }
      }
}

TEST_CASE("cuda: attention with large scores (scale 40) matches the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // Scores in the hundreds: the online softmax must rescale without overflow. f64 only: in f32
  // an absolute score error of ~1e-4 (f32 rounding of a dot of size ~200) moves the weights by
  // ~1e-4 relative, the size of the tolerance itself.
  Tensor q = random_tensor({2, 130, 3, 32}, 350, DType::F64, 1.0, true);
  Tensor k = random_tensor({2, 130, 3, 32}, 351, DType::F64, 1.0, true);
  Tensor v = random_tensor({2, 130, 3, 32}, 352, DType::F64, 1.0, true);
  for (bool isolate : {false, true}) {
    const ops::AttentionOptions o = make_options(false, isolate_for(130, isolate), 40.0);
    INFO("isolate=" << isolate);
    require_cuda_matches_cpu([o](const auto& in) { return ops::attention(in[0], in[1], in[2], o); },
                             {q, k, v}, tolerance(DType::F64));
  }
}

TEST_CASE("cuda: attention lse and key mass (keys 0 and 3) match the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t B = 2, NH = 3;
  uint64_t stream = 400;
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t T : {1, 7, 64, 130, 257})
      for (int64_t HS : {5, 64, 128}) {
        stream += 3;
        const Tensor q = random_tensor({B, T, NH, HS}, stream, dt);
        const Tensor k = random_tensor({B, T, NH, HS}, stream + 1, dt);
        const Tensor v = random_tensor({B, T, NH, HS}, stream + 2, dt);
        const Tensor qd = q.to_device(Device::cuda(0)), kd = k.to_device(Device::cuda(0)),
                     vd = v.to_device(Device::cuda(0));
        for (bool sigmoid : {false, true})
          for (bool isolate : {false, true}) {
            const ops::AttentionOptions o = make_options(sigmoid, isolate_for(T, isolate));
            INFO(describe(dt, T, HS, sigmoid, o.isolate_positions.size()));
            Tensor lse_cpu, lse_gpu;
            (void)ops::attention(q, k, v, o, &lse_cpu);
            (void)ops::attention(qd, kd, vd, o, &lse_gpu);
            REQUIRE(lse_cpu.defined() == !sigmoid);
            REQUIRE(lse_gpu.defined() == !sigmoid);
            if (!sigmoid) {
              REQUIRE(lse_gpu.device().is_cuda());
              REQUIRE(lse_gpu.dtype() == ops::attention_lse_dtype(dt));
              REQUIRE(lse_gpu.shape() == Shape{B, NH, T});
              INFO("lse");
              require_close(lse_gpu.to_device(Device::cpu()), lse_cpu, tolerance(dt).rtol,
                            tolerance(dt).atol);
            }
            for (int64_t key : {0, 3}) {
              if (key >= T) continue;
              INFO("key mass of key " << key);
              const Tensor mass_cpu = ops::attention_key_mass(q, k, lse_cpu, key, o);
              const Tensor mass_gpu = ops::attention_key_mass(qd, kd, lse_gpu, key, o);
              REQUIRE(mass_gpu.device().is_cuda());
              require_close(mass_gpu.to_device(Device::cpu()), mass_cpu, tolerance(dt).rtol,
                            tolerance(dt).atol);
            }
          }
      }
}

TEST_CASE("cuda: sigmoid attention's row sums (AttentionOptions::row_sums) match the CPU: own "
          "kernels, bf16 tensor cores, packed bf16 qkv",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t B = 2, NH = 3;
  uint64_t stream = 2400;
  for (int64_t T : {1, 7, 64, 130, 257})
    for (int64_t HS : {5, 64, 128})
      for (bool isolate : {false, true}) {
        stream += 3;
        ops::AttentionOptions o = make_options(true, isolate_for(T, isolate));
        o.row_sums = true;
        const Tensor q = random_tensor({B, T, NH, HS}, stream, DType::F64);
        const Tensor k = random_tensor({B, T, NH, HS}, stream + 1, DType::F64);
        const Tensor v = random_tensor({B, T, NH, HS}, stream + 2, DType::F64);
        Tensor sums_cpu;  // (B, NH, T) the f64 reference
        (void)ops::attention(q, k, v, o, &sums_cpu);
        REQUIRE(sums_cpu.defined());
        for (DType dt : {DType::F32, DType::F64}) {  // the own kernels, exact
          INFO(describe(dt, T, HS, true, o.isolate_positions.size()) << " row sums");
          Tensor sums_gpu;
          (void)ops::attention(q.to_dtype(dt).to_device(Device::cuda(0)),
                               k.to_dtype(dt).to_device(Device::cuda(0)),
                               v.to_dtype(dt).to_device(Device::cuda(0)), o, &sums_gpu);
          REQUIRE(sums_gpu.device().is_cuda());
          REQUIRE(sums_gpu.dtype() == ops::attention_lse_dtype(dt));
          REQUIRE(sums_gpu.shape() == Shape{B, NH, T});
          require_close(sums_gpu.to_device(Device::cpu()), sums_cpu, tolerance(dt).rtol,
                        tolerance(dt).atol * T);
        }
        if (HS != 64 && HS != 128) continue;  // the tensor-core kernels' head sizes
        PrecisionGuard bf16(Precision::BF16);
        {  // f32 q, k, v rounded to bf16 operands
          INFO(describe(DType::F32, T, HS, true, o.isolate_positions.size()) << " bf16 row sums");
          Tensor sums_gpu;
          (void)ops::attention(q.to_dtype(DType::F32).to_device(Device::cuda(0)),
                               k.to_dtype(DType::F32).to_device(Device::cuda(0)),
                               v.to_dtype(DType::F32).to_device(Device::cuda(0)), o, &sums_gpu);
          REQUIRE(sums_gpu.defined());
          require_close_to_scale(sums_gpu.to_doubles(), sums_cpu.to_doubles(), kBf16Tolerance);
        }
        {  // the packed bf16 qkv, read where it lies; the reference on the same bf16 values
          INFO(describe(DType::BF16, T, HS, true, o.isolate_positions.size())
               << " packed qkv row sums");
          const Tensor values = random_tensor({B, T, 3 * NH * HS}, stream + 7, DType::F32)
                                    .to_dtype(DType::BF16)
                                    .to_dtype(DType::F64);  // bf16-exact values
          Tensor sums_ref, sums_gpu;
          (void)ops::attention_qkv(values, NH, o, &sums_ref);
          (void)ops::attention_qkv(values.to_dtype(DType::BF16).to_device(Device::cuda(0)), NH,
                                   o, &sums_gpu);
          REQUIRE(sums_gpu.dtype() == DType::F32);
          // bf16 operands multiplied exactly, summed in f32: close to the f64 sums
          require_close(sums_gpu.to_device(Device::cpu()), sums_ref, 1e-4, 1e-5 * T);
        }
      }
}

TEST_CASE("cuda: attention_probabilities matches the CPU (T = 33)", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t HS : {5, 64})
      for (bool sigmoid : {false, true})
        for (bool isolate : {false, true}) {
          const Tensor q = random_tensor({2, 33, 3, HS}, 500 + HS, dt);
          const Tensor k = random_tensor({2, 33, 3, HS}, 501 + HS, dt);
          const ops::AttentionOptions o = make_options(sigmoid, isolate_for(33, isolate));
          INFO(describe(dt, 33, HS, sigmoid, o.isolate_positions.size()));
          require_cuda_matches_cpu(
              [o](const auto& in) { return ops::attention_probabilities(in[0], in[1], o); },
              {q, k}, tolerance(dt));
        }
}

TEST_CASE("cuda: attention is bit-identical across two GPU runs", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  for (DType dt : {DType::F32, DType::F64})
    for (bool sigmoid : {false, true}) {
      INFO(dtype_label(dt) << (sigmoid ? " sigmoid" : " softmax"));
      const Tensor q = random_tensor({2, 257, 3, 64}, 600, dt);
      const Tensor k = random_tensor({2, 257, 3, 64}, 601, dt);
      const Tensor v = random_tensor({2, 257, 3, 64}, 602, dt);
      const ops::AttentionOptions o = make_options(sigmoid, {0, 3});
      const auto first = gpu_attention_run(q, k, v, o);
      const auto second = gpu_attention_run(q, k, v, o);
      REQUIRE(first.size() == second.size());
      for (size_t i = 0; i < first.size(); ++i) {
        INFO("result " << i << " (out, [lse,] dq, dk, dv)");
        REQUIRE(first[i] == second[i]);
      }
    }
}

TEST_CASE("cuda: bf16 tensor-core attention matches the CPU (HS 64/128, softmax, sigmoid, "
          "isolate)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t B = 2, NH = 3;
  uint64_t stream = 1000;
  for (int64_t HS : {64, 128})
    for (int64_t T : {1, 37, 130, 257}) {
      stream += 4;
      const Tensor q = random_tensor({B, T, NH, HS}, stream, DType::F32);
      const Tensor k = random_tensor({B, T, NH, HS}, stream + 1, DType::F32);
      const Tensor v = random_tensor({B, T, NH, HS}, stream + 2, DType::F32);
      const Tensor seed = random_tensor({B, T, NH, HS}, stream + 3, DType::F32);
      for (bool sigmoid : {false, true})
        for (bool isolate : {false, true}) {
          const ops::AttentionOptions o = make_options(sigmoid, isolate_for(T, isolate));
          INFO(describe(DType::F32, T, HS, sigmoid, o.isolate_positions.size()) << " bf16");
          // The reference runs in f64 on the same (f32) inputs and seed.
          const auto cpu = attention_results(q, k, v, seed, o, Device::cpu(), DType::F64);
          std::vector<std::vector<double>> gpu;
          {
            PrecisionGuard guard(Precision::BF16);
            gpu = attention_results(q, k, v, seed, o, Device::cuda(0), DType::F32);
          }
          REQUIRE(gpu.size() == cpu.size());
          for (size_t i = 0; i < gpu.size(); ++i) {
            INFO(result_name(i, !sigmoid));
            require_close_to_scale(gpu[i], cpu[i], kBf16Tolerance);
          }
        }
    }
}

TEST_CASE("cuda: bf16 attention takes the tensor-core path only for f32 with HS 64/128",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const ops::AttentionOptions o = make_options(false, {0, 3});
  auto run = [&](int64_t HS, DType dt, Precision precision) {
    const Tensor q = random_tensor({2, 130, 3, HS}, 1100, DType::F32);
    const Tensor k = random_tensor({2, 130, 3, HS}, 1101, DType::F32);
    const Tensor v = random_tensor({2, 130, 3, HS}, 1102, DType::F32);
    const Tensor seed = random_tensor({2, 130, 3, HS}, 1103, DType::F32);
    PrecisionGuard guard(precision);
    return attention_results(q, k, v, seed, o, Device::cuda(0), dt);
  };
  for (int64_t HS : {64, 128}) {
    // Tensor cores: close to the exact kernels, but not bit-identical (bf16 operands).
    INFO("f32 HS=" << HS);
    const auto exact = run(HS, DType::F32, Precision::Exact);
    const auto bf16 = run(HS, DType::F32, Precision::BF16);
    REQUIRE(exact.size() == bf16.size());
    for (size_t i = 0; i < exact.size(); ++i) {
      INFO(result_name(i, true));
      REQUIRE(exact[i] != bf16[i]);
      require_close_to_scale(bf16[i], exact[i], kBf16Tolerance);
    }
  }
  // Other head sizes and f64 keep the exact kernels under Precision::BF16.
  const std::vector<std::pair<int64_t, DType>> fallbacks = {
      {32, DType::F32}, {5, DType::F32}, {64, DType::F64}};
  for (const auto& [HS, dt] : fallbacks) {
    INFO(dtype_label(dt) << " HS=" << HS << " falls back to the exact kernels");
    REQUIRE(run(HS, dt, Precision::BF16) == run(HS, dt, Precision::Exact));
  }
}

TEST_CASE("cuda: bf16 attention is bit-identical across two GPU runs", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  PrecisionGuard guard(Precision::BF16);
  for (int64_t HS : {64, 128})
    for (bool sigmoid : {false, true}) {
      INFO("HS=" << HS << (sigmoid ? " sigmoid" : " softmax"));
      const Tensor q = random_tensor({2, 257, 3, HS}, 1200, DType::F32);
      const Tensor k = random_tensor({2, 257, 3, HS}, 1201, DType::F32);
      const Tensor v = random_tensor({2, 257, 3, HS}, 1202, DType::F32);
      const Tensor seed = random_tensor({2, 257, 3, HS}, 1203, DType::F32);
      const ops::AttentionOptions o = make_options(sigmoid, {0, 3});
      const auto first = attention_results(q, k, v, seed, o, Device::cuda(0), DType::F32);
      const auto second = attention_results(q, k, v, seed, o, Device::cuda(0), DType::F32);
      REQUIRE(first.size() == second.size());
      for (size_t i = 0; i < first.size(); ++i) {
        INFO(result_name(i, !sigmoid));
        REQUIRE(first[i] == second[i]);
      }
    }
}

TEST_CASE("cuda: rope matches the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t HS : {6, 64})
      for (int64_t offset : {0, 5}) {
        INFO(dtype_label(dt) << " HS=" << HS << " offset=" << offset);
        Tensor x = random_tensor({2, 37, 3, HS}, 700 + HS, dt, 1.0, true);
        require_cuda_matches_cpu(
            [offset](const auto& in) { return ops::rope(in[0], 10000.0, offset); }, {x},
            tolerance(dt));
      }
}

TEST_CASE("cuda: rope_qkv matches the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t NH = 3;
  for (DType dt : {DType::F32, DType::F64})
    // HS = 6: the element path; HS = 64: whole 16-byte packs.
    for (int64_t HS : {6, 64})
      for (int64_t offset : {0, 5}) {
        INFO(dtype_label(dt) << " HS=" << HS << " offset=" << offset);
        Tensor qkv = random_tensor({2, 37, 3 * NH * HS}, 710 + HS, dt, 1.0, true);  // (B, T, 3C)
        require_cuda_matches_cpu(
            [NH, offset](const auto& in) { return ops::rope_qkv(in[0], NH, 10000.0, offset); },
            {qkv}, tolerance(dt));
      }
}

TEST_CASE("cuda: rope_qkv's cached angle tables follow theta, T and the offset", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // The GPU keeps a cos/sin table per (T, HS, theta, offset): one theta, another, then the first
  // again, at two (T, offset), each against the CPU (a stale table is off by O(1)).
  const int64_t NH = 3, HS = 64;
  for (DType dt : {DType::F32, DType::F64})
    for (const auto& [T, offset] : {std::pair<int64_t, int64_t>{37, 0}, {5, 11}})
      for (double theta : {10000.0, 500000.0, 10000.0}) {
        const int64_t at = offset;  // a structured binding, copied for the lambda
        INFO(dtype_label(dt) << " T=" << T << " offset=" << offset << " theta=" << theta);
        Tensor qkv = random_tensor({2, T, 3 * NH * HS}, 730 + T, dt, 1.0, true);  // (B, T, 3C)
        require_cuda_matches_cpu(
            [NH, theta, at](const auto& in) { return ops::rope_qkv(in[0], NH, theta, at); },
            {qkv}, tolerance(dt));
      }
}

namespace {
// Requires |actual - expected| <= one bf16 ulp of expected (bf16 keeps 8 significant bits)
// + atol, element by element; actual on any device.
void require_within_bf16_ulp(const Tensor& actual, const Tensor& expected, double atol) {
  const std::vector<double> a = actual.to_device(Device::cpu()).to_doubles();
  const std::vector<double> e = expected.to_doubles();
  REQUIRE(a.size() == e.size());
  int64_t outside = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    int exponent = 0;
    std::frexp(e[i], &exponent);  // |e| in [2^(exponent-1), 2^exponent)
    if (!(std::fabs(a[i] - e[i]) <= std::ldexp(1.0, exponent - 8) + atol)) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++outside;
    }
  }
  INFO(outside << " elements off; the first at " << first << ": "
               << (first >= 0 ? a[first] : 0.0) << " vs " << (first >= 0 ? e[first] : 0.0));
  REQUIRE(outside == 0);
}
}  // namespace

TEST_CASE("cuda: rope_qkv on bf16 matches the CPU on the same values, within one rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // bf16 qkv and upstream gradient (LLaMA's packed product under bf16): the CPU reference runs
  // f32 rope_qkv on their f32 values (exact). The GPU rotates in f32 (cos and sin rounded to f32)
  // and rounds once to bf16: within one bf16 ulp of the reference, plus 2^-18 absolute where the
  // rotation cancels (f32 arithmetic on terms of order 1); v is copied exactly.
  // HS = 64 and 16: whole 16-byte packs of 8 pairs; HS = 6: the element path. Offset 1000:
  // angles up to about 1000 radians.
  const int64_t B = 2, T = 37, NH = 3;
  for (int64_t HS : {6, 16, 64})
    for (int64_t offset : {0, 1000}) {
      INFO("HS=" << HS << " offset=" << offset);
      const int64_t C = NH * HS;
      // (B, T, 3C) each
      const Tensor qkv16 =
          random_tensor({B, T, 3 * C}, 720 + HS, DType::F32).to_dtype(DType::BF16);
      const Tensor g16 =
          random_tensor({B, T, 3 * C}, 721 + HS, DType::F32).to_dtype(DType::BF16);
      Tensor qc = qkv16.to_dtype(DType::F32);
      qc.set_requires_grad(true);
      const Tensor yc = ops::rope_qkv(qc, NH, 10000.0, offset);  // (B, T, 3C)
      autograd::backward(yc, g16.to_dtype(DType::F32));
      Tensor qg = qkv16.to_device(Device::cuda());
      qg.set_requires_grad(true);
      const Tensor yg = ops::rope_qkv(qg, NH, 10000.0, offset);  // (B, T, 3C)
      REQUIRE(yg.dtype() == DType::BF16);
      autograd::backward(yg, g16.to_device(Device::cuda()));
      REQUIRE(qg.grad().dtype() == DType::BF16);
      require_within_bf16_ulp(yg, yc, 0x1p-18);
      require_within_bf16_ulp(qg.grad(), qc.grad(), 0x1p-18);
      REQUIRE(ops::qkv_part(yg.to_device(Device::cpu()), NH, 2).to_doubles() ==
              ops::qkv_part(qkv16, NH, 2).to_doubles());
      REQUIRE(ops::qkv_part(qg.grad().to_device(Device::cpu()), NH, 2).to_doubles() ==
              ops::qkv_part(g16, NH, 2).to_doubles());
    }
}

namespace {

// Targets (B, T) below V from the draws of stream `stream`, every fourth row (i % 4 == 1)
// ignore_index: the cross-entropy tests' targets.
Tensor ce_targets(int64_t B, int64_t T, int64_t V, int32_t ignore_index, uint64_t date,
                  uint64_t stream) {
  const int64_t N = B * T;
  const std::vector<double> draws =
      rand_ints({N}, RngKey{date, stream, 0}, static_cast<int32_t>(V)).to_doubles();
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i)
    t[i] = i % 4 == 1 ? ignore_index : static_cast<int32_t>(draws[i]);  // some ignored
  return Tensor::from_ints(t, {B, T});
}

// Random logits of stddev 3 holding bf16 values, stored as f32 (the CPU's copy of bf16 logits).
Tensor bf16_valued_logits(const Shape& shape, uint64_t stream) {
  return random_tensor(shape, stream, DType::F32, 3.0).to_dtype(DType::BF16).to_dtype(DType::F32);
}

}  // namespace

TEST_CASE("cuda: cross_entropy matches the CPU, forward and backward, with ignored targets",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t B = 3, T = 5, N = B * T;
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t V : {7, 50304})
      for (int32_t ignore_index : {-1, 2}) {
        INFO(dtype_label(dt) << " V=" << V << " ignore_index=" << ignore_index);
        Tensor logits = random_tensor({B, T, V}, 800 + V, dt, 2.0, true);
        const Tensor targets = ce_targets(B, T, V, ignore_index, 20261129, 801);
        require_cuda_matches_cpu(
            [ignore_index](const auto& in) {
              return ops::cross_entropy(in[0], in[1], ignore_index);
            },
            {logits, targets}, tolerance(dt));
        // Every target ignored: loss 0 and a zero gradient.
        const Tensor none = Tensor::from_ints(std::vector<int32_t>(N, ignore_index), {B, T});
        require_cuda_matches_cpu(
            [ignore_index](const auto& in) {
              return ops::cross_entropy(in[0], in[1], ignore_index);
            },
            {logits, none}, tolerance(dt));
      }
}

TEST_CASE("cuda: cross_entropy is bit-identical across two GPU runs", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  const int64_t N = 67, V = 50304;
  const Tensor logits = random_tensor({N, V}, 850, DType::F32, 2.0);
  const Tensor targets =
      rand_ints({N}, RngKey{20261129, 851, 0}, static_cast<int32_t>(V)).to_device(Device::cuda(0));
  auto run = [&] {
    Tensor x = logits.to_device(Device::cuda(0));
    x.set_requires_grad(true);
    Tensor loss = ops::cross_entropy(x, targets);
    autograd::backward(loss);
    return std::vector<std::vector<double>>{loss.to_doubles(), x.grad().to_doubles()};
  };
  REQUIRE(run() == run());
}

TEST_CASE("cuda: cross_entropy on bf16 logits matches the CPU on their values, in f32", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // V = 7 and 263 take the element-wise path, 264 and 50304 the 16-byte packs (8 bf16).
  const int64_t B = 3, T = 5;
  for (int64_t V : {7, 263, 264, 50304})
    for (int32_t ignore_index : {-1, 2}) {
      INFO("V=" << V << " ignore_index=" << ignore_index);
      const Tensor values = bf16_valued_logits({B, T, V}, 820 + V);
      const Tensor targets = ce_targets(B, T, V, ignore_index, 20261129, 821);
      Tensor cpu = values.detach();
      cpu.set_requires_grad(true);
      const Tensor cpu_loss = ops::cross_entropy(cpu, targets, ignore_index);
      autograd::backward(cpu_loss);
      Tensor gpu = values.to_dtype(DType::BF16).to_device(Device::cuda(0));  // exact copy
      gpu.set_requires_grad(true);
      const Tensor gpu_loss =
          ops::cross_entropy(gpu, targets.to_device(Device::cuda(0)), ignore_index);
      REQUIRE(gpu_loss.dtype() == DType::F32);
      // Same inputs, f32 sums in another order: the loss agrees to f32 rounding.
      require_close(gpu_loss.to_device(Device::cpu()), cpu_loss, 1e-5, 1e-6);
      autograd::backward(gpu_loss);
      REQUIRE(gpu.grad().dtype() == DType::BF16);
      // The gradient is rounded to bf16 once: relative 2^-9, plus f32 noise near zero.
      require_close(gpu.grad().to_device(Device::cpu()), cpu.grad(), 4e-3, 1e-7);
    }
  // bf16 logits on the CPU are refused with the fix named.
  const Tensor cpu_bf16 = random_tensor({2, 7}, 830, DType::F32).to_dtype(DType::BF16);
  require_error<DTypeError>(
      [&] { (void)ops::cross_entropy(cpu_bf16, Tensor::from_ints({0, 1}, {2})); },
      {"cross_entropy", "logits", "bf16", "to_dtype"});
}

TEST_CASE("cuda: cross_entropy with its gradient written by the forward matches the CPU and "
          "the unfused GPU path, bit-identically across two runs", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // V = 7 and 263 take the element-wise path, 264 and 50304 the 16-byte packs (8 bf16), each
  // row staged in shared memory; 640 rows of 50304 give every staged block several rows in turn
  // (the stage reused); rows of 120000 bf16 (240 KB) do not fit a block's shared memory and take
  // the kernel that reads each row again from L2.
  struct Case {
    int64_t B, T, V;
  };
  for (const Case& c : {Case{3, 5, 7}, Case{3, 5, 263}, Case{3, 5, 264}, Case{3, 5, 50304},
                        Case{32, 20, 50304}, Case{1, 3, 120000}})
    for (int32_t ignore_index : {-1, 2})
      for (double g : {1.0, 0.25}) {
        const int64_t B = c.B, T = c.T, V = c.V;
        INFO("B=" << B << " T=" << T << " V=" << V << " ignore_index=" << ignore_index
                  << " g=" << g);
        const Tensor values = bf16_valued_logits({B, T, V}, 840 + V);
        const Tensor targets = ce_targets(B, T, V, ignore_index, 20261205, 841);
        Tensor cpu = values.detach();
        cpu.set_requires_grad(true);
        const Tensor cpu_loss = ops::cross_entropy(cpu, targets, ignore_index);
        autograd::backward(cpu_loss, Tensor::full({}, g, DType::F32));
        auto on_gpu = [&](bool fused) {
          ops::FusedCrossEntropyGuard guard(fused);
          Tensor x = values.to_dtype(DType::BF16).to_device(Device::cuda(0));  // exact copy
          x.set_requires_grad(true);
          const Tensor loss = ops::cross_entropy(x, targets.to_device(Device::cuda(0)), ignore_index);
          autograd::backward(loss, Tensor::full({}, g, DType::F32, Device::cuda(0)));
          return std::pair<Tensor, Tensor>{loss.to_device(Device::cpu()),
                                           x.grad().to_device(Device::cpu())};
        };
        const auto [fused_loss, fused_grad] = on_gpu(true);
        const auto [plain_loss, plain_grad] = on_gpu(false);
        REQUIRE(fused_grad.dtype() == DType::BF16);
        require_close(fused_loss, cpu_loss, 1e-5, 1e-6);
        require_close(fused_loss, plain_loss, 1e-5, 1e-6);
        // One bf16 rounding (two with g != 1): relative 2^-8, plus f32 noise near zero.
        require_close(fused_grad, cpu.grad(), 8e-3, 1e-7);
        require_close(fused_grad, plain_grad, 8e-3, 1e-7);
        const auto [again_loss, again_grad] = on_gpu(true);
        REQUIRE(again_loss.to_doubles() == fused_loss.to_doubles());
        REQUIRE(again_grad.to_doubles() == fused_grad.to_doubles());
      }
}

TEST_CASE("cuda: cross_entropy writing its gradient over an op's bf16 logits gives the bits of "
          "its own gradient buffer", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Rows staged in shared memory (264, 50304; 640 rows: each block takes several in turn), read
  // element by element (263), and read again from L2 (120000: a row beyond shared memory, where
  // x[target] must be read before the row's gradient goes over it).
  struct Case {
    int64_t B, T, V;
  };
  for (const Case& c : {Case{3, 5, 263}, Case{3, 5, 264}, Case{32, 20, 50304}, Case{1, 3, 120000}})
    for (int32_t ignore_index : {-1, 2})
      for (double g : {1.0, 0.25}) {
        const int64_t B = c.B, T = c.T, V = c.V;
        INFO("B=" << B << " T=" << T << " V=" << V << " ignore_index=" << ignore_index
                  << " g=" << g);
        const Tensor values = bf16_valued_logits({B, T, V}, 860 + V);  // (B, T, V) f32
        const Tensor targets =
            ce_targets(B, T, V, ignore_index, 20261206, 861).to_device(Device::cuda(0));
        std::vector<double> losses[2], grads[2], after[2];
        for (auto mode : {ops::CrossEntropyLogits::kKept, ops::CrossEntropyLogits::kOverwritten}) {
          const bool over = mode == ops::CrossEntropyLogits::kOverwritten;
          Tensor x = values.to_device(Device::cuda(0));  // (B, T, V) f32 leaf
          x.set_requires_grad(true);
          // (B, T, V) bf16, an op's output (exact: the values are bf16's); its backward converts
          // the bf16 gradient back to f32, exactly
          const Tensor logits = ops::to_dtype(x, DType::BF16);
          const Tensor loss = ops::cross_entropy(logits, targets, ignore_index, mode);
          after[over] = logits.detach().to_device(Device::cpu()).to_doubles();
          autograd::backward(loss, Tensor::full({}, g, DType::F32, Device::cuda(0)));
          losses[over] = loss.to_device(Device::cpu()).to_doubles();
          grads[over] = x.grad().to_device(Device::cpu()).to_doubles();
        }
        REQUIRE(after[0] == values.to_doubles());  // kept
        REQUIRE(losses[1] == losses[0]);
        REQUIRE(grads[1] == grads[0]);
        if (g == 1.0) REQUIRE(after[1] == grads[1]);  // the logits hold the gradient for g = 1
      }
}

TEST_CASE("cuda: a NaN logit makes the loss NaN, as on the CPU, in every logits dtype",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // 300 columns: the NaN sits in one thread's share while other threads hold finite values.
  std::vector<double> values(2 * 300);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37 * static_cast<double>(i));
  values[2] = std::nan("");
  const Tensor targets = Tensor::from_ints({0, 1}, {2});
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    INFO(dtype_name(dt));
    const Tensor logits =
        Tensor::from_doubles(values, {2, 300}, dt == DType::BF16 ? DType::F32 : dt);
    REQUIRE(std::isnan(ops::cross_entropy(logits, targets).item()));
    const Tensor on_gpu = (dt == DType::BF16 ? logits.to_dtype(DType::BF16) : logits)
                              .to_device(Device::cuda(0));
    REQUIRE(std::isnan(ops::cross_entropy(on_gpu, targets.to_device(Device::cuda(0))).item()));
  }
}

TEST_CASE("cuda: cross_entropy with a bad target throws a ValueError naming the op and V",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  for (DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_label(dt));
    const Tensor logits = random_tensor({2, 3, 7}, 900, dt).to_device(Device::cuda(0));
    const Tensor too_big = Tensor::from_ints({0, 1, 2, 3, 9, 4}, {2, 3}).to_device(Device::cuda(0));
    require_error<ValueError>([&] { (void)ops::cross_entropy(logits, too_big); },
                              {"cross_entropy", "target 9", "row 4", "V = 7"});
    // -1 is only allowed when it is the ignore_index.
    const Tensor negative =
        Tensor::from_ints({0, -1, 2, 3, 5, 4}, {2, 3}).to_device(Device::cuda(0));
    require_error<ValueError>([&] { (void)ops::cross_entropy(logits, negative, -100); },
                              {"cross_entropy", "target -1", "row 1", "V = 7"});
    // The stream is still usable afterwards.
    const Tensor good = Tensor::from_ints({0, 1, 2, 3, 6, 4}, {2, 3}).to_device(Device::cuda(0));
    REQUIRE(std::isfinite(ops::cross_entropy(logits, good).item()));
  }
}

TEST_CASE("cuda: bf16 attention backward reads the forward's bf16 operands, bit for bit",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  PrecisionGuard bf16(Precision::BF16);
  const Shape shape{2, 70, 3, 64};  // (B, T, NH, HS): the tensor-core path
  const Device gpu = Device::cuda(0);
  const Tensor q = random_tensor(shape, 940, DType::F32).to_device(gpu);
  const Tensor k = random_tensor(shape, 941, DType::F32).to_device(gpu);
  const Tensor v = random_tensor(shape, 942, DType::F32).to_device(gpu);
  const Tensor g = random_tensor(shape, 943, DType::F32).to_device(gpu);
  ops::AttentionParams params;
  params.scale = 0.125;
  params.first_key.assign(70, 0);
  params.first_key[5] = 5;  // an isolated position too
  Tensor out = Tensor::empty(shape, DType::F32, gpu);      // (B, T, NH, HS)
  Tensor lse = Tensor::empty({2, 3, 70}, DType::F32, gpu);  // (B, NH, T)
  ops::AttentionOperands kept;
  ops::attention_kernels.cuda_forward(q, k, v, params, out, lse, kept);
  REQUIRE(kept.q.defined());
  REQUIRE(kept.q.dtype() == DType::BF16);
  auto backward = [&](const ops::AttentionOperands& operands) {
    Tensor dq = Tensor::empty(shape, DType::F32, gpu), dk = Tensor::empty(shape, DType::F32, gpu),
           dv = Tensor::empty(shape, DType::F32, gpu);  // (B, T, NH, HS) each
    ops::attention_kernels.cuda_backward(q, k, v, out, lse, g, params, operands, dq, dk, dv);
    return std::vector<std::vector<double>>{dq.to_doubles(), dk.to_doubles(), dv.to_doubles()};
  };
  REQUIRE(backward(kept) == backward(ops::AttentionOperands{}));  // the same roundings
}

namespace {

// (B, T, 3C) bf16 on the GPU holding q, k, v side by side, and f32 copies of the same values.
struct PackedQkv {
  Tensor qkv;      // (B, T, 3C) bf16, GPU
  Tensor q, k, v;  // (B, T, NH, HS) f32, GPU: exactly qkv's values
};

PackedQkv packed_qkv(const Shape& shape, uint64_t stream) {
  const Device gpu = Device::cuda(0);
  PackedQkv p;
  const int64_t B = shape[0], T = shape[1], NH = shape[2], HS = shape[3];
  p.qkv = Tensor::empty({B, T, 3 * NH * HS}, DType::BF16, gpu);
  Tensor* parts[3] = {&p.q, &p.k, &p.v};
  for (int i = 0; i < 3; ++i) {
    const Tensor bf16 = random_tensor(shape, stream + i, DType::F32).to_dtype(DType::BF16);
    *parts[i] = bf16.to_dtype(DType::F32).to_device(gpu);  // exact
    ops::qkv_part(p.qkv, NH, i).copy_from(bf16.to_device(gpu));
  }
  return p;
}

}  // namespace

TEST_CASE("cuda: attention on a packed bf16 qkv equals the bf16 path on its thirds, bit for bit",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  PrecisionGuard bf16(Precision::BF16);
  const Device gpu = Device::cuda(0);
  for (int64_t HS : {64, 128})
    for (bool sigmoid : {false, true}) {
      const int64_t B = 2, T = 77, NH = 3;  // a partial last tile
      INFO("HS " << HS << " sigmoid " << sigmoid);
      const PackedQkv p = packed_qkv({B, T, NH, HS}, 950 + HS);
      const Tensor g = random_tensor({B, T, NH, HS}, 960, DType::F32).to_device(gpu);
      ops::AttentionParams params;
      params.scale = 1.0 / std::sqrt(static_cast<double>(HS));
      params.sigmoid = sigmoid;
      params.first_key.assign(T, 0);
      params.first_key[5] = 5;  // an isolated position
      const Shape shape{B, T, NH, HS};
      Tensor out = Tensor::empty(shape, DType::F32, gpu), ref = Tensor::empty(shape, DType::F32, gpu);
      Tensor lse = Tensor::empty({B, NH, T}, DType::F32, gpu);
      Tensor ref_lse = Tensor::empty({B, NH, T}, DType::F32, gpu);
      ops::attention_qkv_kernels.cuda_forward(p.qkv, params, out, lse);
      ops::AttentionOperands kept;
      ops::attention_kernels.cuda_forward(p.q, p.k, p.v, params, ref, ref_lse, kept);
      REQUIRE(out.to_doubles() == ref.to_doubles());
      if (!sigmoid) REQUIRE(lse.to_doubles() == ref_lse.to_doubles());
      Tensor dqkv = Tensor::empty(p.qkv.shape(), DType::BF16, gpu);  // (B, T, 3C)
      ops::attention_qkv_kernels.cuda_backward(p.qkv, out, lse, g, params, dqkv);
      Tensor dq = Tensor::empty(shape, DType::F32, gpu), dk = Tensor::empty(shape, DType::F32, gpu),
             dv = Tensor::empty(shape, DType::F32, gpu);
      ops::attention_kernels.cuda_backward(p.q, p.k, p.v, ref, ref_lse, g, params, kept, dq, dk,
                                           dv);
      // The packed gradient is the f32 one rounded to bf16 where it is stored.
      const Tensor* grads[3] = {&dq, &dk, &dv};
      for (int i = 0; i < 3; ++i) {
        INFO("part " << i);
        REQUIRE(ops::qkv_part(dqkv, NH, i).to_doubles() ==
                grads[i]->to_device(Device::cpu()).to_dtype(DType::BF16).to_doubles());
      }
      // The key-mass probe reads the packed bf16 parts as the f32 copies of their values.
      if (!sigmoid) {
        ops::AttentionOptions plain;
        plain.isolate_positions = {5};
        const Tensor mass = ops::attention_key_mass(ops::qkv_part(p.qkv, NH, 0),
                                                    ops::qkv_part(p.qkv, NH, 1), lse, 0, plain);
        REQUIRE(mass.dtype() == DType::F32);
        require_close(mass.to_device(Device::cpu()),
                      ops::attention_key_mass(p.q, p.k, lse, 0, plain).to_device(Device::cpu()),
                      1e-6, 1e-7);
      }
    }
}

TEST_CASE("cuda: attention_qkv matches the CPU through the op, on and off the tensor-core path",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const ops::AttentionKernelsGuard own(ops::AttentionKernels::Own);  // the own kernels
  // HS 64 packed bf16 (tensor cores, in place), HS 16 bf16 (widened, attention's kernels on the
  // thirds, the gradient rounded back), and f32 (the thirds, exact kernels): against the CPU on
  // the same values, output and the gradient of sum(out * w).
  for (int64_t HS : {64, 16})
    for (DType dtype : {DType::BF16, DType::F32}) {
      PrecisionGuard guard(dtype == DType::BF16 ? Precision::BF16 : Precision::Exact);
      const int64_t B = 2, T = 37, NH = 2;
      INFO("HS " << HS << " " << dtype_name(dtype));
      const Tensor values = random_tensor({B, T, 3 * NH * HS}, 970, DType::F32)
                                .to_dtype(DType::BF16)
                                .to_dtype(DType::F32);  // bf16-exact values
      const Tensor w = random_tensor({B, T, NH, HS}, 971, DType::F32);
      Tensor cpu_qkv = values.copy_contiguous().set_requires_grad(true);
      Tensor gpu_qkv = (dtype == DType::BF16 ? values.to_dtype(DType::BF16) : values)
                           .to_device(Device::cuda())
                           .set_requires_grad(true);
      ops::AttentionOptions options;
      options.isolate_positions = {3};
      const Tensor cpu_out = ops::attention_qkv(cpu_qkv, NH, options);
      const Tensor gpu_out = ops::attention_qkv(gpu_qkv, NH, options);
      REQUIRE(gpu_out.dtype() == DType::F32);
      const double tol = dtype == DType::BF16 ? 2e-2 : 1e-5;
      require_close(gpu_out.to_device(Device::cpu()), cpu_out, tol, tol);
      autograd::backward(ops::sum(ops::mul(cpu_out, w)));
      autograd::backward(ops::sum(ops::mul(gpu_out, w.to_device(Device::cuda()))));
      REQUIRE(gpu_qkv.grad().dtype() == dtype);
      const Tensor grad = gpu_qkv.grad().to_device(Device::cpu());
      require_close(dtype == DType::BF16 ? grad.to_dtype(DType::F32) : grad, cpu_qkv.grad(),
                    5 * tol, 5 * tol);
    }
}
