// [cuda] layernorm, rmsnorm, headwise_rmsnorm, gelu, silu, swiglu, swiglu_packed, bias_gelu and
// embedding against the CPU reference on random inputs (odd sizes, several row counts), forward
// and backward; the norms' bf16 outputs (NormOutput::kOperandDType) against the f32 output
// rounded and their bf16-gradient backward against the CPU; headwise_rmsnorm of a bf16 x; bf16
// swiglu_packed against bf16 swiglu on the halves (bit for bit); the parameter gradients
// bit-identical across two GPU runs; a bad embedding id as a ValueError.
// Skipped where no GPU is present.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "core/precision.h"
#include "core/random.h"
#include "ops/activations.h"
#include "ops/add_norm.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/rmsnorm.h"
#include "ops/statistics.h"
#include "tests/cuda_compare.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::CudaCompareOptions;
using test::dtype_label;
using test::tolerance;
using test::random_tensor;
using test::require_cuda_matches_cpu;
using test::require_error;

namespace {

// f32 kernels accumulate in f32 against the CPU's f64 accumulation: 1e-4 relative, 1e-5 absolute.
// f64 kernels differ from the CPU only by summation order.

// The gradients of `inputs` (on the GPU, fresh leaves) after backward of f with a fixed seed,
// as host vectors; used to check that two GPU runs give bit-identical gradients.
std::vector<std::vector<double>> gpu_gradients(
    const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> on_gpu;
  for (const Tensor& t : inputs) {
    Tensor d = t.detach().to_device(Device::cuda(0));
    if (t.requires_grad()) d.set_requires_grad(true);
    on_gpu.push_back(d);
  }
  Tensor out = f(on_gpu);
  Tensor seed = randn(out.shape(), RngKey{78, 2, 0}, 1.0, out.dtype()).to_device(Device::cuda(0));
  autograd::backward(out, seed);
  std::vector<std::vector<double>> grads;
  for (const Tensor& t : on_gpu)
    if (t.requires_grad()) grads.push_back(t.grad().to_doubles());
  return grads;
}

void require_deterministic(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                           const std::vector<Tensor>& inputs) {
  const auto first = gpu_gradients(f, inputs);
  const auto second = gpu_gradients(f, inputs);
  REQUIRE(first.size() == second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    INFO("gradient " << i);
    REQUIRE(first[i] == second[i]);  // bit-identical
  }
}

// The distance in bf16 steps between two bf16 values (held exactly as doubles): adjacent bf16
// values are one step apart, across zero too (+0 and -0 are one value).
int64_t bf16_steps(double a, double b) {
  auto order = [](double v) {
    const float f = static_cast<float>(v);  // exact: a bf16 value is an f32 value
    uint32_t bits = 0;
    std::memcpy(&bits, &f, sizeof(bits));
    const int64_t magnitude = (bits >> 16) & 0x7fff;  // the bf16 pattern without its sign
    return (bits >> 31) ? -magnitude : magnitude;
  };
  return std::llabs(order(a) - order(b));
}

// A norm under test: y from inputs (x first, all on one device), stored as `output` says.
using NormFn = std::function<Tensor(const std::vector<Tensor>&, ops::NormOutput)>;

// add_layernorm's and add_rmsnorm's normed output, after checking that the residual sum kept x's
// dtype (f32) whatever normed's.
Tensor normed_with_f32_sum(const ops::AddNorm& r) {
  REQUIRE(r.sum.dtype() == DType::F32);
  return r.normed;
}

// A norm's bf16 output (NormOutput::kOperandDType under Precision::BF16) from f32 CPU inputs, all
// differentiable (x first): y is bf16, within one bf16 step of the GPU's f32 output (kInputDType)
// rounded once (the same f32 math, rounded when stored), and within one rounding (rtol 2^-7) of
// the CPU's (where kOperandDType keeps f32). From a bf16 upstream gradient, every input's
// gradient keeps its input's dtype (f32) and matches the CPU's on the same gradient widened to
// f32 (exact, so the f32 tolerance of a parameter gradient summing `rows` rows applies), and the
// GPU's f32 path on it to within f32 rounding (the same kernels' math on the same values).
void require_bf16_norm_output(const NormFn& f, const std::vector<Tensor>& inputs, int64_t rows) {
  PrecisionGuard bf16(Precision::BF16);
  const Tensor g16 = random_tensor(inputs[0].shape(), 170, DType::F32).to_dtype(DType::BF16);
  // y on `device`, with the inputs' gradients from g16 in y's dtype.
  auto run = [&](Device device, ops::NormOutput output, std::vector<Tensor>& grads) {
    std::vector<Tensor> on_device;  // fresh leaves: to_device(cpu) returns the tensor itself
    for (const Tensor& t : inputs)
      on_device.push_back(t.detach().to_device(device).set_requires_grad(true));
    const Tensor y = f(on_device, output);
    autograd::backward(y, g16.to_dtype(y.dtype()).to_device(device));
    for (const Tensor& t : on_device) grads.push_back(t.grad().to_device(Device::cpu()));
    return y.to_device(Device::cpu());
  };
  std::vector<Tensor> cpu_grads, f32_grads, bf16_grads;
  const Tensor y_cpu = run(Device::cpu(), ops::NormOutput::kOperandDType, cpu_grads);
  const Tensor y_f32 = run(Device::cuda(), ops::NormOutput::kInputDType, f32_grads);
  const Tensor y_bf16 = run(Device::cuda(), ops::NormOutput::kOperandDType, bf16_grads);
  REQUIRE(y_cpu.dtype() == DType::F32);  // the CPU keeps x's dtype
  REQUIRE(y_f32.dtype() == DType::F32);
  REQUIRE(y_bf16.dtype() == DType::BF16);
  const std::vector<double> got = y_bf16.to_doubles();
  const std::vector<double> rounded = y_f32.to_dtype(DType::BF16).to_doubles();
  REQUIRE(got.size() == rounded.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (bf16_steps(got[i], rounded[i]) > 1) {
      INFO("y[" << i << "] = " << got[i] << ", the f32 output rounded: " << rounded[i]);
      REQUIRE(bf16_steps(got[i], rounded[i]) <= 1);
    }
  test::require_close(y_bf16.to_dtype(DType::F32), y_cpu, 1.0 / 128, 1e-5);
  const CudaCompareOptions tol = tolerance(DType::F32, rows);
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(bf16_grads[i].dtype() == inputs[i].dtype());
    test::require_close(bf16_grads[i], cpu_grads[i], tol.rtol, tol.atol);
    test::require_close(bf16_grads[i], f32_grads[i], 1e-6, 1e-6);
  }
}

}  // namespace

TEST_CASE("cuda: layernorm with and without bias matches the CPU, forward and backward",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    // C 256 and 1024: f32 rows held in registers (C = 128 n, n <= 8); 1152: n = 9, the
    // row-walking kernel.
    for (int64_t C : {7, 64, 256, 769, 1024, 1152})
      // 15 rows (not a multiple of the 8 rows per block) and 1517 rows (many row chunks in the
      // weight/bias column sums).
      for (Shape lead : {Shape{3, 5}, Shape{37, 41}}) {
        if (C > 256 && lead[0] == 37) continue;  // over 1M elements: slow CPU reference
        Shape shape = lead;
        shape.push_back(C);
        INFO(dtype_label(dt) << " x " << shape_str(shape));
        Tensor x = random_tensor(shape, 100 + C, dt, 1.0, true);
        Tensor w = random_tensor({C}, 101 + C, dt, 1.0, true);
        Tensor b = random_tensor({C}, 102 + C, dt, 1.0, true);
        const int64_t rows = lead[0] * lead[1];
        require_cuda_matches_cpu(
            [](const auto& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); }, {x, w, b},
            tolerance(dt, rows));
        require_cuda_matches_cpu(
            [](const auto& in) { return ops::layernorm(in[0], in[1], Tensor(), 1e-5); }, {x, w},
            tolerance(dt, rows));
      }
}

TEST_CASE("cuda: layernorm's weight and bias gradients summed in the x-gradient pass "
          "(run.fused_norm_param_grads) match the CPU, bit-identically across runs",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Rows held in registers (C = 128, 768, 1024: 1 to 8 float4s a lane; 1024 needs 64 KB of
  // shared memory); 15 rows: one block mostly idle; 1517 rows: a row a warp, a partial last
  // block; 8 x 1030 rows: 4 rows a warp. f32 dy and, under bf16 with a bf16 output, bf16 dy;
  // with and without a bias. Against the CPU, and the same bits from two GPU runs; the fused
  // pass counted (not the column sums).
  const ops::FusedNormParamGradsGuard fused(true);
  for (int64_t C : {128, 768, 1024})
    for (Shape lead : {Shape{3, 5}, Shape{37, 41}, Shape{8, 1030}}) {
      if (C > 128 && lead[1] == 1030) continue;  // over 6M elements: slow CPU reference
      Shape shape = lead;
      shape.push_back(C);
      INFO("x " << shape_str(shape));
      const int64_t rows = lead[0] * lead[1];
      Tensor x = random_tensor(shape, 300 + C, DType::F32, 1.0, true);
      Tensor w = random_tensor({C}, 301 + C, DType::F32, 1.0, true);
      Tensor b = random_tensor({C}, 302 + C, DType::F32, 1.0, true);
      auto f = [](const auto& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); };
      const int64_t before = ops::norm_param_grads_fused();
      require_cuda_matches_cpu(f, {x, w, b}, tolerance(DType::F32, rows));
      REQUIRE(ops::norm_param_grads_fused() > before);
      require_deterministic(f, {x, w, b});
      require_cuda_matches_cpu(
          [](const auto& in) { return ops::layernorm(in[0], in[1], Tensor(), 1e-5); }, {x, w},
          tolerance(DType::F32, rows));
      const auto bf16_output = [](const auto& in, ops::NormOutput output) {
        return ops::layernorm(in[0], in[1], in[2], 1e-5, output);
      };
      require_bf16_norm_output(bf16_output, {x.detach(), w.detach(), b.detach()}, rows);
      PrecisionGuard bf16(Precision::BF16);
      require_deterministic(
          [](const auto& in) {
            return ops::layernorm(in[0], in[1], in[2], 1e-5, ops::NormOutput::kOperandDType);
          },
          {x, w, b});
    }
}

TEST_CASE("cuda: rmsnorm's and headwise_rmsnorm's gain gradients summed in the x-gradient pass "
          "(run.fused_norm_param_grads) match the CPU, bit-identically across runs",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Fused where a warp's rows use distinct slices of the gain: a block norm's rows of 768 (one
  // row a warp; 12600 rows: 6 a warp) and head-wise RMSNorm's per-head gamma (4 heads of 12 a
  // warp; 24576 rows: 3 batches a warp, each lane's heads changing between them, loaded together;
  // 98304 rows: 12 batches a warp, three groups of four loaded together; 124992 rows: 15 a
  // warp, three groups of four and one of three, the last block's last warps on rows past the
  // end; 5 heads: a batch's heads wrap and the last batch is partial), f32 and bf16 x; not where
  // they share
  // one (a shared gamma, rows of 64 with a gain of 64): the column sums then, not counted.
  // Against the CPU and the same bits from two GPU runs.
  const ops::FusedNormParamGradsGuard fused(true);
  struct Case {
    Shape x, gain;
    bool headwise, fusable;
  };
  for (const Case& c : {Case{{5, 37, 768}, {768}, false, true},
                        Case{{6, 2100, 768}, {768}, false, true},
                        Case{{4, 33, 12, 64}, {12, 64}, true, true},
                        Case{{8, 100, 12, 64}, {12, 64}, true, true},
                        Case{{16, 128, 12, 64}, {12, 64}, true, true},
                        Case{{16, 512, 12, 64}, {12, 64}, true, true},
                        Case{{16, 651, 12, 64}, {12, 64}, true, true},
                        Case{{3, 7, 5, 64}, {5, 64}, true, true},
                        Case{{4, 33, 12, 64}, {64}, true, false},
                        Case{{9, 41, 64}, {64}, false, false}}) {
    INFO("x " << shape_str(c.x) << " gain " << shape_str(c.gain));
    const int64_t rows = [&] {
      int64_t n = 1;
      for (int64_t d : c.x) n *= d;
      return n / c.x.back();
    }();
    Tensor x = random_tensor(c.x, 310, DType::F32, 1.0, true);
    Tensor w = random_tensor(c.gain, 311, DType::F32, 1.0, true);
    auto f = [headwise = c.headwise](const auto& in) {
      return headwise ? ops::headwise_rmsnorm(in[0], in[1], 1e-6) : ops::rmsnorm(in[0], in[1], 1e-6);
    };
    const int64_t before = ops::norm_param_grads_fused();
    require_cuda_matches_cpu(f, {x, w}, tolerance(DType::F32, rows));
    REQUIRE((ops::norm_param_grads_fused() > before) == c.fusable);
    require_deterministic(f, {x, w});
    if (c.headwise) {  // cuDNN's bf16 attention output: bf16 x, y and dy; the same bits twice
      PrecisionGuard bf16(Precision::BF16);
      const Tensor g16 = random_tensor(c.x, 312, DType::F32).to_dtype(DType::BF16);
      auto grads = [&] {
        Tensor xb = x.detach().to_dtype(DType::BF16).to_device(Device::cuda());
        Tensor wb = w.detach().to_device(Device::cuda());
        xb.set_requires_grad(true);
        wb.set_requires_grad(true);
        const Tensor y =
            ops::headwise_rmsnorm(xb, wb, 1e-6, ops::NormOutput::kOperandDType);  // bf16
        autograd::backward(y, g16.to_device(Device::cuda()));
        return std::pair{xb.grad().to_doubles(), wb.grad().to_doubles()};
      };
      const int64_t at = ops::norm_param_grads_fused();
      const auto first = grads();
      REQUIRE((ops::norm_param_grads_fused() > at) == c.fusable);
      const auto second = grads();
      REQUIRE(first.first == second.first);
      REQUIRE(first.second == second.second);
    }
  }
}

TEST_CASE("cuda: add_layernorm and add_rmsnorm match the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    for (Shape shape : {Shape{3, 5, 7}, Shape{37, 41, 64}, Shape{5, 3, 384}}) {  // 384: in registers
      INFO(dtype_label(dt) << " x " << shape_str(shape));
      const int64_t C = shape.back(), rows = shape[0] * shape[1];
      Tensor x = random_tensor(shape, 110, dt, 1.0, true);
      Tensor d = random_tensor(shape, 111, dt, 1.0, true);
      Tensor w = random_tensor({C}, 112, dt, 1.0, true);
      Tensor b = random_tensor({C}, 113, dt, 1.0, true);
      Tensor c = random_tensor(shape, 114, dt);  // weights the sum's share of the loss
      require_cuda_matches_cpu(
          [c](const auto& in) {
            const ops::AddNorm r = ops::add_layernorm(in[0], in[1], in[2], in[3], 1e-5);
            return ops::add(ops::mul(r.sum, c.to_device(in[0].device())), r.normed);
          },
          {x, d, w, b}, tolerance(dt, rows));
      require_cuda_matches_cpu(
          [c](const auto& in) {
            const ops::AddNorm r = ops::add_rmsnorm(in[0], in[1], in[2], 1e-6);
            return ops::add(ops::mul(r.sum, c.to_device(in[0].device())), r.normed);
          },
          {x, d, w}, tolerance(dt, rows));
    }
}

TEST_CASE("cuda: add_layernorm and add_rmsnorm with a bf16 delta (run.bf16_branch_outputs) equal "
          "the same delta widened to f32, bit for bit", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // A branch's product output stored in bf16 (ops::bf16_branch_outputs): the kernels widen it
  // as they load it, so sum, normed and the statistics are those of the f32 path on the widened
  // values. Rows held in registers (C = 768, GPT-2's, and 256) and one warp per row (C = 100).
  PrecisionGuard bf16(Precision::BF16);
  const Device gpu = Device::cuda();
  for (int64_t C : {100, 256, 768}) {
    INFO("C " << C);
    const Shape shape{3, 37, C};  // 111 rows
    const Tensor x = random_tensor(shape, 180, DType::F32, 2.0).to_device(gpu);
    const Tensor d16 =
        random_tensor(shape, 181, DType::F32, 1.0).to_dtype(DType::BF16).to_device(gpu);
    const Tensor d32 = d16.to_dtype(DType::F32);  // the same values, f32
    const Tensor w = random_tensor({C}, 182, DType::F32, 1.0).to_device(gpu);
    const Tensor b = random_tensor({C}, 183, DType::F32, 1.0).to_device(gpu);
    for (ops::NormOutput output : {ops::NormOutput::kInputDType, ops::NormOutput::kOperandDType}) {
      const int64_t before = ops::bf16_deltas_added();
      const ops::AddNorm ln16 = ops::add_layernorm(x, d16, w, b, 1e-5, output);
      const ops::AddNorm ln32 = ops::add_layernorm(x, d32, w, b, 1e-5, output);
      const ops::AddNorm rms16 = ops::add_rmsnorm(x, d16, w, 1e-6, output);
      const ops::AddNorm rms32 = ops::add_rmsnorm(x, d32, w, 1e-6, output);
      REQUIRE(ops::bf16_deltas_added() - before == 2);
      for (const auto* pair : {&ln16, &rms16}) REQUIRE(pair->sum.dtype() == DType::F32);
      REQUIRE(ln16.sum.to_doubles() == ln32.sum.to_doubles());
      REQUIRE(ln16.normed.to_doubles() == ln32.normed.to_doubles());
      REQUIRE(rms16.sum.to_doubles() == rms32.sum.to_doubles());
      REQUIRE(rms16.normed.to_doubles() == rms32.normed.to_doubles());
    }
  }
}

TEST_CASE("cuda: layernorm's bf16 output (kOperandDType) matches the CPU within one rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // GPT-2's layernorms under bf16, plain and fused with the add (require_bf16_norm_output).
  for (int64_t C : {96, 256})  // 256: the row held in registers (C = 128 n)
    for (bool fused : {false, true}) {
      INFO("C " << C << ", fused " << fused);
      const Shape shape{6, 37, C};  // 222 rows
      const Tensor x = random_tensor(shape, 166, DType::F32, 2.0);
      const Tensor delta = random_tensor(shape, 167, DType::F32, 1.0);
      const Tensor w = random_tensor({C}, 168, DType::F32, 1.0);
      const Tensor b = random_tensor({C}, 169, DType::F32, 1.0);
      if (fused)
        require_bf16_norm_output(
            [](const auto& in, ops::NormOutput output) {
              return normed_with_f32_sum(ops::add_layernorm(in[0], in[1], in[2], in[3], 1e-5, output));
            },
            {x, delta, w, b}, 6 * 37);
      else
        require_bf16_norm_output(
            [](const auto& in, ops::NormOutput output) {
              return ops::layernorm(in[0], in[1], in[2], 1e-5, output);
            },
            {x, w, b}, 6 * 37);
    }
}

TEST_CASE("cuda: rmsnorm's and add_rmsnorm's bf16 output (kOperandDType) within one rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // LLaMA's RMSNorms under bf16: with and without weight, and fused with the add (the sum f32).
  for (int64_t C : {7, 96, 768}) {
    INFO("C " << C);
    const Shape shape{6, 37, C};  // 222 rows
    const Tensor x = random_tensor(shape, 171, DType::F32, 2.0);
    const Tensor delta = random_tensor(shape, 172, DType::F32, 1.0);
    const Tensor w = random_tensor({C}, 173, DType::F32, 1.0);
    require_bf16_norm_output(
        [](const auto& in, ops::NormOutput output) {
          return ops::rmsnorm(in[0], in[1], 1e-6, output);
        },
        {x, w}, 6 * 37);
    require_bf16_norm_output(
        [](const auto& in, ops::NormOutput output) {
          return ops::rmsnorm(in[0], Tensor(), 1e-6, output);
        },
        {x}, 6 * 37);
    require_bf16_norm_output(
        [](const auto& in, ops::NormOutput output) {
          return normed_with_f32_sum(ops::add_rmsnorm(in[0], in[1], in[2], 1e-6, output));
        },
        {x, delta, w}, 6 * 37);
  }
}

TEST_CASE("cuda: headwise_rmsnorm's bf16 output (kOperandDType) within one rounding, both gammas",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // The attention output (B, T, NH, HS) normalised per head under bf16, its output feeding o_proj:
  // gamma per head (NH, HS) (B T rows per element) or shared (HS) (B T NH rows per element).
  struct Heads {
    int64_t NH, HS;
  };
  for (Heads h : {Heads{3, 5}, Heads{12, 64}})
    for (bool shared : {false, true}) {
      INFO("NH=" << h.NH << " HS=" << h.HS << " shared=" << shared);
      const Tensor x = random_tensor({4, 33, h.NH, h.HS}, 174, DType::F32, 2.0);
      const Tensor gamma =
          random_tensor(shared ? Shape{h.HS} : Shape{h.NH, h.HS}, 175, DType::F32, 1.0);
      require_bf16_norm_output(
          [](const auto& in, ops::NormOutput output) {
            return ops::headwise_rmsnorm(in[0], in[1], 1e-6, output);
          },
          {x, gamma}, shared ? 4 * 33 * h.NH : 4 * 33);
    }
}

TEST_CASE("cuda: headwise_rmsnorm of a bf16 x (cuDNN's attention output): f32 math, bf16 y and dx",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // x as cuDNN writes it (bf16), gamma f32: against the CPU in f64 on the same (bf16-exact)
  // values, y and x's gradient within one bf16 rounding, gamma's gradient as f32 sums.
  PrecisionGuard bf16(Precision::BF16);
  for (bool shared : {false, true}) {
    INFO("shared " << shared);
    const int64_t B = 4, T = 33, NH = 12, HS = 64;
    const Tensor x = random_tensor({B, T, NH, HS}, 176, DType::F32, 2.0).to_dtype(DType::BF16);
    const Tensor gamma = random_tensor(shared ? Shape{HS} : Shape{NH, HS}, 177, DType::F32, 1.0);
    const Tensor g = random_tensor({B, T, NH, HS}, 178, DType::F32).to_dtype(DType::BF16);
    Tensor x_cpu = x.to_dtype(DType::F64).set_requires_grad(true);
    Tensor gamma_cpu = gamma.to_dtype(DType::F64).set_requires_grad(true);
    const Tensor y_cpu = ops::headwise_rmsnorm(x_cpu, gamma_cpu, 1e-6);
    autograd::backward(y_cpu, g.to_dtype(DType::F64));
    Tensor x_gpu = x.to_device(Device::cuda()).set_requires_grad(true);
    Tensor gamma_gpu = gamma.to_device(Device::cuda()).set_requires_grad(true);
    const Tensor y_gpu = ops::headwise_rmsnorm(x_gpu, gamma_gpu, 1e-6);
    REQUIRE(y_gpu.dtype() == DType::BF16);
    autograd::backward(y_gpu, g.to_device(Device::cuda()));
    REQUIRE(x_gpu.grad().dtype() == DType::BF16);
    REQUIRE(gamma_gpu.grad().dtype() == DType::F32);
    test::require_close(y_gpu.to_device(Device::cpu()).to_dtype(DType::F64), y_cpu, 1.0 / 128,
                        1e-5);
    test::require_close(x_gpu.grad().to_device(Device::cpu()).to_dtype(DType::F64), x_cpu.grad(),
                        1.0 / 128, 1e-4);
    const CudaCompareOptions tol = tolerance(DType::F32, shared ? B * T * NH : B * T);
    test::require_close(gamma_gpu.grad().to_device(Device::cpu()).to_dtype(DType::F64),
                        gamma_cpu.grad(), tol.rtol, tol.atol);
  }
}

TEST_CASE("cuda: headwise_rmsnorm's row statistics of x and y (the metrics' var_pos) match the "
          "CPU's of the same values",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Heads of 64 (GPT-2, LLaMA: the grouped kernel writes them from its registers) and of 12 (not
  // whole chunks: another kernel, then row_statistics); x bf16 (cuDNN's output, y bf16) and f32
  // with y f32 or bf16 (kOperandDType under bf16). Each against row_statistics of the GPU's own
  // x and y on the CPU; y the same bits as without the statistics.
  struct Case {
    int64_t HS;
    DType x_dtype;
    ops::NormOutput output;
  };
  const PrecisionGuard bf16(Precision::BF16);
  for (const Case& c : {Case{64, DType::BF16, ops::NormOutput::kOperandDType},
                        Case{64, DType::F32, ops::NormOutput::kInputDType},
                        Case{64, DType::F32, ops::NormOutput::kOperandDType},
                        Case{12, DType::F32, ops::NormOutput::kInputDType},
                        Case{12, DType::BF16, ops::NormOutput::kOperandDType}}) {
    INFO("HS " << c.HS << " x " << dtype_name(c.x_dtype));
    const int64_t B = 3, T = 37, NH = 5, rows = B * T * NH;
    const Tensor x = random_tensor({B, T, NH, c.HS}, 190, DType::F32, 2.0)
                         .to_dtype(c.x_dtype)
                         .to_device(Device::cuda());
    const Tensor gamma = random_tensor({NH, c.HS}, 191, DType::F32).to_device(Device::cuda());
    ops::NormRowStatistics stats;
    const Tensor y = ops::headwise_rmsnorm(x, gamma, 1e-6, c.output, &stats);
    REQUIRE(y.to_doubles() == ops::headwise_rmsnorm(x, gamma, 1e-6, c.output).to_doubles());
    const Tensor x_cpu = x.to_device(Device::cpu()).to_dtype(DType::F32);
    const Tensor y_cpu = y.to_device(Device::cpu()).to_dtype(DType::F32);
    test::require_close(stats.input.to_device(Device::cpu()),
                  ops::row_statistics(x_cpu.reshape_view({rows, c.HS})), 1e-5, 1e-6);
    test::require_close(stats.output.to_device(Device::cpu()),
                  ops::row_statistics(y_cpu.reshape_view({rows, c.HS})), 1e-5, 1e-6);
  }
}

TEST_CASE("cuda: layernorm of rows with a large mean matches the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // x = 20 + N(0, 1): the two-pass variance keeps f32 accurate. C 130: the row-walking kernel;
  // 256: f32 rows in registers.
  for (int64_t C : {130, 256})
    for (DType dt : {DType::F32, DType::F64}) {
      INFO(dtype_label(dt) << " C " << C);
      std::vector<double> v = random_tensor({9, C}, 110, DType::F64).to_doubles();
      for (double& e : v) e += 20.0;
      Tensor x = Tensor::from_doubles(v, {9, C}, dt).set_requires_grad(true);
      Tensor w = random_tensor({C}, 111, dt, 1.0, true);
      Tensor b = random_tensor({C}, 112, dt, 1.0, true);
      // f32: the f32 row sum (~2600) rounds to ~1e-4, so the mean is off by ~1e-6 and y by up to
      // ~|w| * 1e-6 where the CPU's f64 sums are exact; loosened 3x to keep a margin.
      CudaCompareOptions o = tolerance(dt);
      if (dt == DType::F32) {
        o.rtol = 3e-4;
        o.atol = 3e-5;
      }
      require_cuda_matches_cpu(
          [](const auto& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); }, {x, w, b}, o);
    }
}

TEST_CASE("cuda: rmsnorm with and without weight matches the CPU, forward and backward",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t C : {7, 33, 769})
      for (Shape lead : {Shape{3, 5}, Shape{29, 31}}) {
        if (C == 769 && lead[0] == 29) continue;  // keep the CPU reference quick
        Shape shape = lead;
        shape.push_back(C);
        INFO(dtype_label(dt) << " x " << shape_str(shape));
        Tensor x = random_tensor(shape, 120 + C, dt, 1.0, true);
        Tensor w = random_tensor({C}, 121 + C, dt, 1.0, true);
        require_cuda_matches_cpu([](const auto& in) { return ops::rmsnorm(in[0], in[1], 1e-6); },
                                 {x, w}, tolerance(dt, lead[0] * lead[1]));
        require_cuda_matches_cpu(
            [](const auto& in) { return ops::rmsnorm(in[0], Tensor(), 1e-6); }, {x},
            tolerance(dt));
      }
}

TEST_CASE("cuda: headwise_rmsnorm with per-head and shared gamma matches the CPU", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  struct Heads {
    int64_t NH, HS;
  };
  for (DType dt : {DType::F32, DType::F64})
    for (Heads h : {Heads{3, 5}, Heads{12, 64}})
      for (bool shared : {false, true}) {
        INFO(dtype_label(dt) << " NH=" << h.NH << " HS=" << h.HS << " shared=" << shared);
        Tensor x = random_tensor({2, 7, h.NH, h.HS}, 130 + h.HS, dt, 1.0, true);
        Shape gshape = shared ? Shape{h.HS} : Shape{h.NH, h.HS};
        Tensor gamma = random_tensor(gshape, 131 + h.HS, dt, 1.0, true);
        // Rows per gamma element: 2 * 7, or 2 * 7 * NH when shared.
        require_cuda_matches_cpu(
            [](const auto& in) { return ops::headwise_rmsnorm(in[0], in[1], 1e-6); }, {x, gamma},
            tolerance(dt, shared ? 14 * h.NH : 14));
      }
  // (B, T, NH, HS) with many rows per gain element: many row chunks in the gamma column sums.
  for (bool shared : {false, true}) {
    INFO("f32 (4, 33, 12, 64) shared=" << shared);
    Tensor x = random_tensor({4, 33, 12, 64}, 135, DType::F32, 1.0, true);
    Tensor gamma = random_tensor(shared ? Shape{64} : Shape{12, 64}, 136, DType::F32, 1.0, true);
    require_cuda_matches_cpu(
        [](const auto& in) { return ops::headwise_rmsnorm(in[0], in[1], 1e-6); }, {x, gamma},
        tolerance(DType::F32, shared ? 4 * 33 * 12 : 4 * 33));
  }
}

TEST_CASE("cuda: norm parameter gradients are bit-identical across two GPU runs", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  Tensor x = random_tensor({16, 67, 96}, 140, DType::F32, 1.0, true);
  Tensor w = random_tensor({96}, 141, DType::F32, 1.0, true);
  Tensor b = random_tensor({96}, 142, DType::F32, 1.0, true);
  require_deterministic([](const auto& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); },
                        {x, w, b});
  require_deterministic([](const auto& in) { return ops::rmsnorm(in[0], in[1], 1e-6); }, {x, w});
  Tensor xh = random_tensor({4, 33, 12, 64}, 143, DType::F32, 1.0, true);
  Tensor g = random_tensor({64}, 144, DType::F32, 1.0, true);
  require_deterministic(
      [](const auto& in) { return ops::headwise_rmsnorm(in[0], in[1], 1e-6); }, {xh, g});
}

TEST_CASE("cuda: gelu, silu and swiglu match the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    // Sizes that are not multiples of 4 take the element-wise tail; {4, 1024} in f32 takes the
    // 16-byte path throughout.
    for (Shape shape : {Shape{7}, Shape{3, 11, 33}, Shape{5, 1001}, Shape{4, 1024}}) {
      INFO(dtype_label(dt) << " " << shape_str(shape));
      // stddev 3: the tails of tanh and sigmoid are exercised too.
      Tensor x = random_tensor(shape, 150, dt, 3.0, true);
      Tensor up = random_tensor(shape, 151, dt, 1.0, true);
      require_cuda_matches_cpu([](const auto& in) { return ops::gelu(in[0]); }, {x},
                               tolerance(dt));
      require_cuda_matches_cpu([](const auto& in) { return ops::silu(in[0]); }, {x},
                               tolerance(dt));
      require_cuda_matches_cpu([](const auto& in) { return ops::swiglu(in[0], in[1]); },
                               {x, up}, tolerance(dt));
      // Only one of the two inputs requiring grad (the other gradient pointer is null).
      Tensor up_const = random_tensor(shape, 152, dt, 1.0, false);
      require_cuda_matches_cpu([](const auto& in) { return ops::swiglu(in[0], in[1]); },
                               {x, up_const}, tolerance(dt));
      Tensor gate_const = random_tensor(shape, 153, dt, 3.0, false);
      require_cuda_matches_cpu([](const auto& in) { return ops::swiglu(in[0], in[1]); },
                               {gate_const, up}, tolerance(dt));
    }
}

TEST_CASE("cuda: bias_gelu matches the CPU, forward and backward (grad bias deterministic)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    // F not a multiple of 4 takes the element-wise path; {600, 12} sums 600 rows into grad bias.
    for (Shape shape : {Shape{5, 7}, Shape{3, 11, 33}, Shape{5, 1001}, Shape{4, 1024},
                        Shape{600, 12}}) {
      INFO(dtype_label(dt) << " " << shape_str(shape));
      Tensor x = random_tensor(shape, 154, dt, 3.0, true);
      Tensor bias = random_tensor({shape.back()}, 155, dt, 1.0, true);
      const auto f = [](const auto& in) { return ops::bias_gelu(in[0], in[1]); };
      require_cuda_matches_cpu(f, {x, bias}, tolerance(dt, shape[0]));
      require_deterministic(f, {x, bias});
    }
}

TEST_CASE("cuda: bias_gelu on bf16 matches the CPU on the same values, within one rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // bf16 x and upstream gradient (GPT-2's FFN hidden under bf16), f32 bias: the CPU reference
  // runs on their f32 values (exact). y and grad x carry one bf16 rounding (2^-9 relative, so
  // rtol 2^-7) plus the f32-vs-double math near GELU's tails (atol 1e-5); grad bias sums the
  // unrounded f32 values (the f32 tolerance of a 600-row sum).
  // {600, 1024}: whole 16-byte packs of 8 bf16; {37, 1001} and {5, 7}: the element path.
  for (Shape shape : {Shape{600, 1024}, Shape{37, 1001}, Shape{5, 7}}) {
    INFO(shape_str(shape));
    const Tensor x16 = random_tensor(shape, 156, DType::F32, 3.0).to_dtype(DType::BF16);
    const Tensor g16 = random_tensor(shape, 157, DType::F32, 1.0).to_dtype(DType::BF16);
    const Tensor bias = random_tensor({shape.back()}, 158, DType::F32, 1.0);
    Tensor xc = x16.to_dtype(DType::F32), bc = bias.copy_contiguous();
    xc.set_requires_grad(true);
    bc.set_requires_grad(true);
    Tensor yc = ops::bias_gelu(xc, bc);
    autograd::backward(yc, g16.to_dtype(DType::F32));
    Tensor xg = x16.to_device(Device::cuda()), bg = bias.to_device(Device::cuda());
    xg.set_requires_grad(true);
    bg.set_requires_grad(true);
    Tensor yg = ops::bias_gelu(xg, bg);
    REQUIRE(yg.dtype() == DType::BF16);
    autograd::backward(yg, g16.to_device(Device::cuda()));
    REQUIRE(xg.grad().dtype() == DType::BF16);
    REQUIRE(bg.grad().dtype() == DType::F32);
    test::require_close(yg.to_device(Device::cpu()), yc, 1.0 / 128, 1e-5);
    test::require_close(xg.grad().to_device(Device::cpu()), xc.grad(), 1.0 / 128, 1e-5);
    test::require_close(bg.grad().to_device(Device::cpu()), bc.grad(), 1e-4, 1e-4);
  }
}

TEST_CASE("cuda: swiglu on bf16 matches the CPU on the same values, within one rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // bf16 gate, up and upstream gradient (LLaMA's FFN under bf16): the CPU reference runs on their
  // f32 values (exact). The output and both gradients carry one bf16 rounding (2^-9 relative:
  // rtol 2^-7) plus f32-vs-double math (atol 1e-5). 4096 x 3: whole 16-byte packs; 37 x 101
  // and 5 x 7: the element path at the tails.
  for (Shape shape : {Shape{4096, 3}, Shape{37, 101}, Shape{5, 7}}) {
    INFO(shape_str(shape));
    const Tensor a16 = random_tensor(shape, 163, DType::F32, 3.0).to_dtype(DType::BF16);
    const Tensor b16 = random_tensor(shape, 164, DType::F32, 1.0).to_dtype(DType::BF16);
    const Tensor g16 = random_tensor(shape, 165, DType::F32, 1.0).to_dtype(DType::BF16);
    Tensor ac = a16.to_dtype(DType::F32), bc = b16.to_dtype(DType::F32);
    ac.set_requires_grad(true);
    bc.set_requires_grad(true);
    const Tensor yc = ops::swiglu(ac, bc);
    autograd::backward(yc, g16.to_dtype(DType::F32));
    Tensor ag = a16.to_device(Device::cuda()), bg = b16.to_device(Device::cuda());
    ag.set_requires_grad(true);
    bg.set_requires_grad(true);
    const Tensor yg = ops::swiglu(ag, bg);
    REQUIRE(yg.dtype() == DType::BF16);
    autograd::backward(yg, g16.to_device(Device::cuda()));
    REQUIRE(ag.grad().dtype() == DType::BF16);
    test::require_close(yg.to_device(Device::cpu()).to_dtype(DType::F32), yc, 1.0 / 128, 1e-5);
    test::require_close(ag.grad().to_device(Device::cpu()).to_dtype(DType::F32), ac.grad(),
                        1.0 / 128, 1e-5);
    test::require_close(bg.grad().to_device(Device::cpu()).to_dtype(DType::F32), bc.grad(),
                        1.0 / 128, 1e-5);
  }
}

TEST_CASE("cuda: swiglu_packed matches the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    // F = 7 and 1001: each row's tail element by element, and up's rows unaligned; F = 1024:
    // whole 16-byte packs throughout.
    for (Shape shape : {Shape{14}, Shape{3, 11, 14}, Shape{5, 2002}, Shape{4, 2048}}) {
      INFO(dtype_label(dt) << " " << shape_str(shape));
      Tensor gate_up = random_tensor(shape, 171, dt, 3.0, true);  // (..., 2F), stddev 3
      require_cuda_matches_cpu([](const auto& in) { return ops::swiglu_packed(in[0]); },
                               {gate_up}, tolerance(dt));
    }
}

TEST_CASE("cuda: swiglu_packed on bf16 equals swiglu on the halves, bit for bit", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // The same per-element code on the same bf16 values: output and gradients identical.
  // {64, 2048}: whole 16-byte packs; {6, 24}: F = 12, up's rows not 16-byte aligned (element
  // path) while the halves copied out are one aligned row; {37, 202} and {5, 14}: row tails.
  for (Shape shape : {Shape{64, 2048}, Shape{6, 24}, Shape{37, 202}, Shape{5, 14}}) {
    INFO(shape_str(shape));
    const int64_t F = shape[1] / 2;
    const Device gpu = Device::cuda();
    // (rows, 2F): gate | up
    Tensor gate_up =
        random_tensor(shape, 172, DType::F32, 3.0).to_dtype(DType::BF16).to_device(gpu);
    const Tensor grad =  // (rows, F)
        random_tensor({shape[0], F}, 173, DType::F32, 1.0).to_dtype(DType::BF16).to_device(gpu);
    gate_up.set_requires_grad(true);
    const Tensor y = ops::swiglu_packed(gate_up);  // (rows, F)
    REQUIRE(y.dtype() == DType::BF16);
    autograd::backward(y, grad);
    REQUIRE(gate_up.grad().dtype() == DType::BF16);
    Tensor gate = gate_up.detach().narrow_view(1, 0, F).copy_contiguous();  // (rows, F)
    Tensor up = gate_up.detach().narrow_view(1, F, F).copy_contiguous();    // (rows, F)
    gate.set_requires_grad(true);
    up.set_requires_grad(true);
    const Tensor expected = ops::swiglu(gate, up);  // (rows, F)
    autograd::backward(expected, grad);
    const Tensor packed_grad = gate_up.grad().to_device(Device::cpu());  // (rows, 2F)
    REQUIRE(y.to_device(Device::cpu()).to_doubles() ==
            expected.to_device(Device::cpu()).to_doubles());
    REQUIRE(packed_grad.narrow_view(1, 0, F).to_doubles() ==
            gate.grad().to_device(Device::cpu()).to_doubles());
    REQUIRE(packed_grad.narrow_view(1, F, F).to_doubles() ==
            up.grad().to_device(Device::cpu()).to_doubles());
  }
}

TEST_CASE("cuda: embedding with repeated ids matches the CPU; its gradient is repeatable",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const int64_t V = 1000, C = 33;
  // (4, 61) ids from [0, 50): many repeats; plus the first and last rows and one hot id.
  std::vector<double> raw = rand_ints({4, 61}, RngKey{9, 160, 0}, 50).to_doubles();
  std::vector<int32_t> idv(raw.begin(), raw.end());
  idv[0] = 0;
  idv[5] = static_cast<int32_t>(V - 1);
  idv[100] = static_cast<int32_t>(V - 1);
  for (size_t i = 10; i < idv.size(); i += 7) idv[i] = 777;
  Tensor ids = Tensor::from_ints(idv, {4, 61});
  // Many more tokens than used rows: long segments per id.
  Tensor many = rand_ints({3000}, RngKey{9, 161, 0}, 40);
  for (DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_label(dt));
    Tensor table = random_tensor({V, C}, 162, dt, 1.0, true);
    require_cuda_matches_cpu([](const auto& in) { return ops::embedding(in[0], in[1]); },
                             {ids, table}, tolerance(dt));
    require_cuda_matches_cpu([](const auto& in) { return ops::embedding(in[0], in[1]); },
                             {many, table}, tolerance(dt));
    require_deterministic([](const auto& in) { return ops::embedding(in[0], in[1]); },
                          {ids, table});
    require_deterministic([](const auto& in) { return ops::embedding(in[0], in[1]); },
                          {many, table});
  }
  // V = 1 and C = 1, and a vocabulary that is an exact power of two.
  Tensor ones = Tensor::from_ints({0, 0, 0}, {3});
  require_cuda_matches_cpu([](const auto& in) { return ops::embedding(in[0], in[1]); },
                           {ones, random_tensor({1, 1}, 163, DType::F32, 1.0, true)});
  Tensor pow2 = Tensor::from_ints({1023, 0, 512, 1023, 511}, {5});
  require_cuda_matches_cpu([](const auto& in) { return ops::embedding(in[0], in[1]); },
                           {pow2, random_tensor({1024, 8}, 164, DType::F32, 1.0, true)});
}

TEST_CASE("cuda: embedding with an out-of-range id throws a ValueError naming it", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  Tensor table = random_tensor({1000, 33}, 170, DType::F32).to_device(Device::cuda(0));
  Tensor too_big =
      Tensor::from_ints({1, 2, 3, 4, 5, 1000}, {2, 3}).to_device(Device::cuda(0));
  require_error<ValueError>([&] { ops::embedding(too_big, table); },
                            {"embedding", "id 1000", "(1, 2)", "V = 1000"});
  Tensor negative = Tensor::from_ints({0, -1, 2, -5}, {4}).to_device(Device::cuda(0));
  require_error<ValueError>([&] { ops::embedding(negative, table); },
                            {"embedding", "id -1", "(1,)", "V = 1000"});
  // The device is still usable afterwards (bad rows were never read).
  Tensor good = Tensor::from_ints({0, 999, 5}, {3}).to_device(Device::cuda(0));
  Tensor out = ops::embedding(good, table);
  test::require_close(out.to_device(Device::cpu()),
                      ops::embedding(Tensor::from_ints({0, 999, 5}, {3}),
                                     table.to_device(Device::cpu())),
                      0, 0);
}
