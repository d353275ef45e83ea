// [cuda] runtime, allocator, copies, elementwise ops, reductions and matmul against the CPU
// reference on random inputs (odd sizes too). Skipped where no GPU is present.
#include "autograd/engine.h"
#include "core/concat_flat.h"
#include "core/device_runtime.h"
#include "core/precision.h"
#include "ops/elementwise.h"
#include "ops/activations.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "tests/cuda_compare.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;
using test::require_cuda_matches_cpu;

TEST_CASE("cuda: allocation, host/device copies and fill round-trip", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  Tensor x = random_tensor({3, 1001}, 1, DType::F32);
  Tensor d = x.to_device(Device::cuda(0));
  REQUIRE(d.device().is_cuda());
  REQUIRE(d.to_device(Device::cpu()).to_doubles() == x.to_doubles());
  Tensor z = Tensor::full({17}, 2.5, DType::F32, Device::cuda(0));
  REQUIRE(z.to_doubles() == std::vector<double>(17, 2.5));
  Tensor d2 = d.copy_contiguous();  // device to device
  REQUIRE(d2.to_doubles() == x.to_doubles());
}

TEST_CASE("cuda: the peak memory counts a tensor freed before it is read", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  DeviceRuntime& runtime = device_runtime(Device::cuda(0));
  const double before = runtime.memory_peak_mib();
  REQUIRE(before >= runtime.memory_in_use_mib());
  {  // a peak well above anything the earlier cases held at once, freed at once
    const double mib = before + 512;
    Tensor big = Tensor::zeros({static_cast<int64_t>(mib * 1024 * 1024 / 4)}, DType::F32,
                               Device::cuda(0));
    runtime.synchronize();
  }
  runtime.synchronize();
  // The big tensor alone is 512 MiB above the mark before it (what else was in use adds to it).
  const double after = runtime.memory_peak_mib();
  REQUIRE(after >= before + 511);
  REQUIRE(runtime.memory_in_use_mib() < after - 512);
}

TEST_CASE("cuda: to_dtype between f32, f64 and bf16 on the GPU equals the CPU's conversion",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  const Tensor x = random_tensor({7, 33}, 2400, DType::F64, 3.0);  // (7, 33)
  for (DType from : {DType::F32, DType::F64})
    for (DType to : {DType::F32, DType::F64}) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const Tensor cpu = x.to_dtype(from).to_dtype(to);
      const Tensor gpu = x.to_dtype(from).to_device(Device::cuda()).to_dtype(to);
      REQUIRE(gpu.dtype() == to);
      REQUIRE(gpu.to_doubles() == cpu.to_doubles());
    }
  // bf16: rounded to nearest even on the way in (as the CPU rounds), exact on the way out; and
  // ops::to_dtype's gradient converts back on the device.
  for (DType from : {DType::F32, DType::F64}) {
    INFO(dtype_name(from) << " -> bf16 -> f32");
    const Tensor on_gpu = x.to_dtype(from).to_device(Device::cuda());
    const Tensor b = on_gpu.to_dtype(DType::BF16);
    REQUIRE(b.to_doubles() == x.to_dtype(DType::F32).to_dtype(DType::BF16).to_doubles());
    REQUIRE(b.to_dtype(DType::F32).to_doubles() == b.to_doubles());
  }
  Tensor leaf = x.to_dtype(DType::F32).to_device(Device::cuda()).set_requires_grad(true);
  autograd::backward(ops::sum(ops::to_dtype(ops::to_dtype(leaf, DType::BF16), DType::F32)));
  REQUIRE(leaf.grad().dtype() == DType::F32);
  REQUIRE(leaf.grad().to_doubles() == std::vector<double>(7 * 33, 1.0));
}

TEST_CASE("cuda: concat_flat of many strided parts matches the CPU (f32, f64, bf16)", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // 97 parts (more than one launch's 40), ranks 1 to 4: transposes, narrowed columns, empty
  // parts, contiguous blocks, each copied from the same CPU values.
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    INFO(dtype_name(dt));
    std::vector<Tensor> cpu, gpu;
    for (int i = 0; i < 97; ++i) {
      const Tensor base = random_tensor({3, 5, 4, 2}, 300 + i, DType::F32).to_dtype(dt);
      const Tensor on_gpu = base.to_device(Device::cuda());
      auto view = [&](const Tensor& t) {
        switch (i % 5) {
          case 0: return t.transpose_view(0, 2);
          case 1: return t.narrow_view(1, 1, 3).narrow_view(3, 1, 1);
          case 2: return t.narrow_view(0, 0, 0);
          case 3: return t.reshape_view({60, 2}).narrow_view(0, 7, 11);
          default: return t.reshape_view({120});
        }
      };
      cpu.push_back(view(base));
      gpu.push_back(view(on_gpu));
    }
    REQUIRE(concat_flat(gpu).to_doubles() == concat_flat(cpu).to_doubles());
  }
}

TEST_CASE("cuda: add/mul/scale/sum/mean match the CPU, forward and backward", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor a = random_tensor({5, 7, 33}, 2, dt, 1.0, true);
    Tensor b = random_tensor({33}, 3, dt, 1.0, true);
    Tensor c = random_tensor({5, 7, 33}, 4, dt, 1.0, true);
    require_cuda_matches_cpu([](const auto& in) { return ops::add(in[0], in[1]); }, {a, b});
    require_cuda_matches_cpu([](const auto& in) { return ops::mul(in[0], in[1]); }, {a, b});
    require_cuda_matches_cpu([](const auto& in) { return ops::mul(in[0], in[1]); }, {a, c});
    require_cuda_matches_cpu([](const auto& in) { return ops::scale(in[0], -0.7); }, {a});
    require_cuda_matches_cpu([](const auto& in) { return ops::sum(in[0]); }, {a});
    require_cuda_matches_cpu([](const auto& in) { return ops::mean(in[0]); }, {c});
  }
}

TEST_CASE("cuda: matmul (all transposes, batched and shared) and linear match the CPU",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true}) {
        Shape a_shape = ta ? Shape{3, 37, 29} : Shape{3, 29, 37};
        Shape b_core = tb ? Shape{41, 37} : Shape{37, 41};
        Shape b_shape = shared ? b_core : Shape{3, b_core[0], b_core[1]};
        Tensor a = random_tensor(a_shape, 10, DType::F32, 1.0, true);
        Tensor b = random_tensor(b_shape, 11, DType::F32, 1.0, true);
        INFO("ta=" << ta << " tb=" << tb << " shared=" << shared);
        require_cuda_matches_cpu(
            [ta, tb](const auto& in) { return ops::matmul(in[0], in[1], ta, tb); }, {a, b});
      }
  Tensor x = random_tensor({4, 9, 65}, 12, DType::F32, 1.0, true);
  Tensor w = random_tensor({127, 65}, 13, DType::F32, 1.0, true);
  Tensor bias = random_tensor({127}, 14, DType::F32, 1.0, true);
  require_cuda_matches_cpu([](const auto& in) { return ops::linear(in[0], in[1], in[2]); },
                           {x, w, bias});
  require_cuda_matches_cpu(
      [](const auto& in) { return ops::contiguous(ops::narrow(ops::linear(in[0], in[1]), 2, 3, 50)); },
      {x, w});
}

TEST_CASE("cuda: run.gemm_search times cuBLASLt's candidates once a shape and keeps one: "
          "products, accumulating ones too, match the CPU within bf16 rounding",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Each operand rounded to bf16 (relative error uniform within 2^-9): a product of K = 136
  // unit-normal terms is off by about sqrt(K) * 2^-9 * sqrt(2/3) = 0.019 (one standard
  // deviation), two products summed by 0.026, and the largest of 13,800 outputs by about 4.3 of
  // those (0.11, as an H100 measured with atol 0.08: 0.106 at |y| = 1.16). atol 0.3 is over ten;
  // a wrong algorithm is off by the values themselves (about 12).
  const test::CudaCompareOptions loose = test::bf16_operand_tolerance(0.3);
  PrecisionGuard bf16(Precision::BF16);
  const ops::GemmSearchGuard search(8);
  // Shapes no other case makes (a plan is made once a shape, searched on its first call): a
  // linear with its bias in the epilogue, used twice (its products and their gradients' are
  // searched on their first calls, which write C: beta 0).
  Tensor x1 = random_tensor({3, 23, 136}, 30, DType::F32, 1.0, true);
  Tensor x2 = random_tensor({3, 23, 136}, 31, DType::F32, 1.0, true);
  Tensor w = random_tensor({200, 136}, 32, DType::F32, 1.0, true);
  Tensor bias = random_tensor({200}, 33, DType::F32, 1.0, true);
  const auto twice = [](const auto& in) {
    return ops::add(ops::linear(in[0], in[2], in[3]), ops::linear(in[1], in[2], in[3]));
  };
  const int64_t before = ops::gemm_searches();
  require_cuda_matches_cpu(twice, {x1, x2, w, bias}, loose);
  REQUIRE(ops::gemm_searches() > before);  // the search ran (a GPU offers several candidates)
  // Chosen once: the same shapes again search no more (and give the same bits, as any fixed
  // algorithm would).
  const int64_t searched = ops::gemm_searches();
  auto grads = [&] {
    std::vector<Tensor> in;
    for (const Tensor& t : {x1, x2, w, bias}) {
      in.push_back(t.detach().to_device(Device::cuda()));
      in.back().set_requires_grad(true);
    }
    const Tensor y = twice(in);
    autograd::backward(ops::sum(y));
    return std::vector<std::vector<double>>{y.to_doubles(), in[0].grad().to_doubles(),
                                            in[2].grad().to_doubles(), in[3].grad().to_doubles()};
  };
  REQUIRE(grads() == grads());
  REQUIRE(ops::gemm_searches() == searched);
  // A product that accumulates into C (beta 1: a weight gradient added into the flat gradient
  // buffer) on its first call: the search's runs write scratch, and C gets the product once.
  // K = 57: one standard deviation of the bf16 operands' error is sqrt(57) * 2^-9 * sqrt(2/3) =
  // 0.012, the largest of 6,336 outputs about 0.05; C + 2 g^T x would be off by about 7.5.
  const Tensor g = random_tensor({1, 57, 72}, 34, DType::F32);   // (1, K, M)
  const Tensor xk = random_tensor({1, 57, 88}, 35, DType::F32);  // (1, K, N)
  const Tensor c0 = random_tensor({1, 72, 88}, 36, DType::F32);  // (1, M, N)
  Tensor c = c0.to_device(Device::cuda());                       // (1, M, N)
  ops::matmul_kernels.forward(Device::cuda())(g.to_device(Device::cuda()), true,
                                              xk.to_device(Device::cuda()), false, c, true);
  REQUIRE(ops::gemm_searches() == searched + 1);
  test::require_close(c.to_device(Device::cpu()), ops::add(c0, ops::matmul(g, xk, true, false)),
                      2e-2, 0.2);
}

TEST_CASE("cuda: bf16 tensor-core products match the CPU within bf16 rounding", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // Operands rounded to bf16 (8 significant bits, relative error <= 2^-9 each) and summed in
  // fp32: for K = 65..129 unit-normal terms the error is ~ sqrt(K) * 2^-8 ~ 0.05 absolute at
  // worst, against values of size ~ sqrt(K) ~ 10.
  const test::CudaCompareOptions loose = test::bf16_operand_tolerance(8e-2);
  PrecisionGuard bf16(Precision::BF16);
  Tensor x = random_tensor({4, 9, 129}, 15, DType::F32, 1.0, true);
  Tensor w = random_tensor({127, 129}, 16, DType::F32, 1.0, true);
  Tensor bias = random_tensor({127}, 17, DType::F32, 1.0, true);
  require_cuda_matches_cpu([](const auto& in) { return ops::linear(in[0], in[1], in[2]); },
                           {x, w, bias}, loose);
  // x rounded once by the caller (GPT-2's q, k, v): same values, gradients still reach x.
  require_cuda_matches_cpu(
      [](const auto& in) {
        return ops::linear(in[0], in[1], in[2], ops::tensor_core_operand(in[0]));
      },
      {x, w, bias}, loose);
  Tensor a = random_tensor({3, 29, 65}, 18, DType::F32, 1.0, true);
  Tensor b = random_tensor({3, 65, 41}, 19, DType::F32, 1.0, true);
  require_cuda_matches_cpu([](const auto& in) { return ops::matmul(in[0], in[1]); }, {a, b},
                           loose);
  // A bf16 output (the logits' linear): the product rounded once more, gradients still f32.
  require_cuda_matches_cpu(
      [](const auto& in) {
        return ops::linear(in[0], in[1], Tensor(), Tensor(), ops::LinearOutput::kOperandDType);
      },
      {x, w}, loose);
  // With a bias (GPT-2's c_attn): the f32 bias joins the f32 product before the rounding; the
  // bias gradient is summed from the bf16 output gradient into f32.
  require_cuda_matches_cpu(
      [](const auto& in) {
        return ops::linear(in[0], in[1], in[2], Tensor(), ops::LinearOutput::kOperandDType);
      },
      {x, w, bias}, loose);
  {
    Tensor xg = x.detach().to_device(Device::cuda()), wg = w.detach().to_device(Device::cuda());
    Tensor bg = bias.detach().to_device(Device::cuda());
    REQUIRE(ops::linear(xg, wg, Tensor(), Tensor(), ops::LinearOutput::kOperandDType).dtype() ==
            DType::BF16);
    const Tensor with_bias = ops::linear(xg, wg, bg, Tensor(), ops::LinearOutput::kOperandDType);
    REQUIRE(with_bias.dtype() == DType::BF16);
    // The f32 product with its f32 bias, rounded once, against the epilogue path's sum with the
    // bias rounded to bf16 first: one bf16 step of y (2^-7 |y|) plus the bias's own rounding
    // (half a step of b: at most 2^-5 for |b| < 8, these biases being unit normals).
    const Tensor f32 = ops::linear(xg, wg, bg);
    test::require_close(with_bias.to_device(Device::cpu()).to_dtype(DType::F32),
                        f32.to_device(Device::cpu()).to_dtype(DType::BF16).to_dtype(DType::F32),
                        1.0 / 128, 1.0 / 32);
  }
  // GPT-2's FFN under bf16: c_fc writes bf16, bias_gelu reads and writes bf16, c_proj reads the
  // bf16 hidden as its operand and writes f32; the hidden's gradient is bf16 throughout.
  {
    Tensor h = random_tensor({4, 9, 129}, 20, DType::F32, 1.0, true);
    Tensor w_fc = random_tensor({127, 129}, 21, DType::F32, 0.1, true);
    Tensor b_fc = random_tensor({127}, 22, DType::F32, 1.0, true);
    Tensor w_proj = random_tensor({65, 127}, 23, DType::F32, 0.1, true);
    Tensor b_proj = random_tensor({65}, 24, DType::F32, 1.0, true);
    const auto mlp = [](const auto& in) {
      Tensor fc = ops::linear(in[0], in[1], Tensor(), Tensor(), ops::LinearOutput::kOperandDType);
      return ops::linear(ops::bias_gelu(fc, in[2]), in[3], in[4]);
    };
    require_cuda_matches_cpu(mlp, {h, w_fc, b_fc, w_proj, b_proj}, loose);
    std::vector<Tensor> on_gpu;
    for (const Tensor& t : {h, w_fc, b_fc}) on_gpu.push_back(t.detach().to_device(Device::cuda()));
    Tensor fc = ops::linear(on_gpu[0], on_gpu[1], Tensor(), Tensor(),
                            ops::LinearOutput::kOperandDType);
    Tensor u = ops::bias_gelu(fc, on_gpu[2]);
    REQUIRE(u.dtype() == DType::BF16);
    REQUIRE(ops::linear(u, w_proj.detach().to_device(Device::cuda())).dtype() == DType::F32);
    // A bf16 x goes with f32 weights only.
    Tensor w64 = w_proj.detach().to_dtype(DType::F64).to_device(Device::cuda());
    test::require_error<DTypeError>([&] { (void)ops::linear(u, w64); }, {"linear", "w", "f64"});
  }
  // Really on the tensor-core path: not bit-identical to the exact fp32 product.
  Tensor xg = x.detach().to_device(Device::cuda()), wg = w.detach().to_device(Device::cuda());
  std::vector<double> fast = ops::linear(xg, wg).to_doubles();
  PrecisionGuard exact(Precision::Exact);
  REQUIRE(ops::linear(xg, wg).to_doubles() != fast);
}
