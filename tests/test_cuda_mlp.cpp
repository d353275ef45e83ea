// [cuda] The products' epilogues of run.gemm_epilogues under bf16: gelu_mlp (GPT-2's FFN as one
// op, ops/mlp.h) composed and with cuBLASLt's GELU epilogues, and linear's bias gradient in the
// weight gradient's product (BGRADB), against the CPU reference and against each other: within
// bf16's rounding, but not bit-identical (so the epilogue path really ran).
#include "autograd/engine.h"
#include "core/precision.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/reduce.h"
#include "tests/cuda_compare.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;

namespace {

// Sets ops::gemm_epilogues for a scope.
class EpilogueGuard {
 public:
  explicit EpilogueGuard(ops::GemmEpilogues e) : before_(ops::gemm_epilogues) {
    ops::gemm_epilogues = e;
  }
  ~EpilogueGuard() { ops::gemm_epilogues = before_; }

 private:
  ops::GemmEpilogues before_;
};

// x (2, 16, 128), w_fc (512, 128), b_fc (512), w_proj (128, 512), b_proj (128): GPT-2's
// proportions at C = 128, weights at GPT-2's scale.
std::vector<Tensor> mlp_inputs() {
  return {random_tensor({2, 16, 128}, 71, DType::F32, 1.0, true),
          random_tensor({512, 128}, 72, DType::F32, 0.06, true),
          random_tensor({512}, 73, DType::F32, 0.5, true),
          random_tensor({128, 512}, 74, DType::F32, 0.04, true),
          random_tensor({128}, 75, DType::F32, 0.5, true)};
}

struct GpuRun {
  std::vector<double> y, hidden;
  std::vector<std::vector<double>> grads;  // x, w_fc, b_fc, w_proj, b_proj
};

GpuRun run_on_gpu(const std::vector<Tensor>& cpu_inputs) {
  std::vector<Tensor> in;
  for (const Tensor& t : cpu_inputs)
    in.push_back(t.detach().to_device(Device::cuda()).set_requires_grad(true));
  const ops::GeluMlp m = ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]);
  autograd::backward(ops::sum(ops::mul(m.y, m.y)));
  GpuRun r{m.y.to_doubles(), m.hidden.to_device(Device::cpu()).to_dtype(DType::F64).to_doubles(),
           {}};
  for (const Tensor& t : in) r.grads.push_back(t.grad().to_doubles());
  return r;
}

}  // namespace

TEST_CASE("cuda: gelu_mlp under bf16 matches the CPU, composed and in cuBLASLt's epilogues",
          "[cuda][mlp]") {
  SINKLAB_REQUIRE_CUDA();
  // bf16 operands, pre and hidden: each term of a weight gradient carries about 2.5e-3 of
  // rounding (pre's and hidden's), so an element summing 32 rows is off by about 0.014 (one
  // sigma), and the largest of w_proj's 65,536 elements by about 4.5 sigma: atol 0.1 (a wrong
  // kernel is off by O(1)). The H200 measured 0.094 at 48 rows and 262,144 elements.
  const test::CudaCompareOptions loose = test::bf16_operand_tolerance(0.1);
  PrecisionGuard bf16(Precision::BF16);
  const auto f = [](const auto& in) { return ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]).y; };
  for (ops::GemmEpilogues epilogues : {ops::GemmEpilogues::None, ops::GemmEpilogues::Forward,
                                       ops::GemmEpilogues::ForwardBackward}) {
    INFO("gemm_epilogues " << static_cast<int>(epilogues));
    EpilogueGuard guard(epilogues);
    test::require_cuda_matches_cpu(f, mlp_inputs(), loose);
    // Without biases (GELU_AUX and DGELU without the bias terms).
    const std::vector<Tensor> in = mlp_inputs();
    test::require_cuda_matches_cpu(
        [](const auto& in) { return ops::gelu_mlp(in[0], in[1], Tensor(), in[2], Tensor()).y; },
        {in[0], in[1], in[3]}, loose);
  }
  // The two GPU paths against each other: one bf16 rounding of pre or hidden apart at most.
  GpuRun composed, forward, fused;
  {
    EpilogueGuard off(ops::GemmEpilogues::None);
    composed = run_on_gpu(mlp_inputs());
  }
  {
    EpilogueGuard on(ops::GemmEpilogues::Forward);
    forward = run_on_gpu(mlp_inputs());
  }
  {
    EpilogueGuard on(ops::GemmEpilogues::ForwardBackward);
    fused = run_on_gpu(mlp_inputs());
  }
  REQUIRE(test::closeness(fused.hidden, composed.hidden, 1.0 / 64, 1.0 / 64) <= 1);
  REQUIRE(test::closeness(fused.y, composed.y, 2e-2, 2e-2) <= 1);
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(test::closeness(fused.grads[i], composed.grads[i], 2e-2, 0.1) <= 1);
  }
  // cuBLASLt's GELU and ours round differently somewhere among 16,384 hidden values, and its
  // GELU derivative differently among w_fc's gradients: the epilogues really ran.
  REQUIRE(fused.hidden != composed.hidden);
  REQUIRE(fused.grads[1] != composed.grads[1]);
  // forward: GELU in c_fc's epilogue (the same hidden as forward_backward's, bit for bit), its
  // derivative in a pass of its own (other gradients than forward_backward's).
  REQUIRE(forward.hidden == fused.hidden);
  REQUIRE(forward.y == fused.y);
  REQUIRE(forward.grads[1] != fused.grads[1]);
}

TEST_CASE("cuda: linear's bias gradient in the weight gradient's product (BGRADB) matches the "
          "CPU and the column-sum kernel", "[cuda][mlp]") {
  SINKLAB_REQUIRE_CUDA();
  // as above: bf16 operands, 32 rows per weight-gradient sum
  const test::CudaCompareOptions loose = test::bf16_operand_tolerance(0.1);
  PrecisionGuard bf16(Precision::BF16);
  const std::vector<Tensor> in = {random_tensor({2, 16, 128}, 76, DType::F32, 1.0, true),
                                  random_tensor({96, 128}, 77, DType::F32, 0.06, true),
                                  random_tensor({96}, 78, DType::F32, 0.5, true)};
  // An f32 output (c_proj: its gradient comes f32 and is rounded for the product) and a bf16 one
  // (c_attn: its gradient comes bf16).
  for (bool bf16_out : {false, true}) {
    INFO("bf16 output " << bf16_out);
    const auto f = [bf16_out](const auto& x) {
      return ops::linear(x[0], x[1], x[2], Tensor(),
                         bf16_out ? ops::LinearOutput::kOperandDType
                                  : ops::LinearOutput::kWeightDType);
    };
    std::vector<std::vector<double>> bias_grads;
    for (ops::GemmEpilogues e : {ops::GemmEpilogues::None, ops::GemmEpilogues::ForwardBiasGrad}) {
      INFO("gemm_epilogues " << static_cast<int>(e));
      EpilogueGuard guard(e);
      test::require_cuda_matches_cpu(f, in, loose);
      std::vector<Tensor> g;
      for (const Tensor& t : in)
        g.push_back(t.detach().to_device(Device::cuda()).set_requires_grad(true));
      const Tensor y = f(g);  // (2, 16, 96), f32 or bf16
      autograd::backward(y, random_tensor(y.shape(), 79, DType::F32)
                                .to_dtype(y.dtype())
                                .to_device(Device::cuda()));  // a fixed seed of y's dtype
      bias_grads.push_back(g[2].grad().to_doubles());
    }
    REQUIRE(test::closeness(bias_grads[1], bias_grads[0], 2e-2, 0.1) <= 1);
    // The f32 output's gradient is summed from its bf16 rounding in the epilogue, from f32 by
    // the kernel: the sums differ (a bf16 output's gradient is bf16 either way).
    if (!bf16_out) REQUIRE(bias_grads[1] != bias_grads[0]);
  }
}

TEST_CASE("cuda: linear's bias gradient by the column-sum kernel (run.bias_grad_columns) is the "
          "kernel's sums of the bf16 gradient, and BGRADB's within rounding", "[cuda][mlp]") {
  SINKLAB_REQUIRE_CUDA();
  const test::CudaCompareOptions loose = test::bf16_operand_tolerance(0.1);  // as above
  PrecisionGuard bf16(Precision::BF16);
  EpilogueGuard epilogues(ops::GemmEpilogues::ForwardBiasGrad);
  const std::vector<Tensor> in = {random_tensor({2, 16, 128}, 80, DType::F32, 1.0, true),
                                  random_tensor({96, 128}, 81, DType::F32, 0.06, true),
                                  random_tensor({96}, 82, DType::F32, 0.5, true)};
  for (bool bf16_out : {false, true}) {  // c_proj's f32 output, c_attn's bf16 one
    INFO("bf16 output " << bf16_out);
    const auto f = [bf16_out](const auto& x) {
      return ops::linear(x[0], x[1], x[2], Tensor(),
                         bf16_out ? ops::LinearOutput::kOperandDType
                                  : ops::LinearOutput::kWeightDType);
    };
    const Tensor gy = random_tensor({2, 16, 96}, 83, DType::F32);  // the upstream gradient
    std::vector<double> bias_grads[2], weight_grads[2];
    for (bool columns : {false, true}) {
      INFO("bias_grad_columns " << columns);
      const bool before = ops::bias_grad_columns;
      ops::bias_grad_columns = columns;
      test::require_cuda_matches_cpu(f, in, loose);
      std::vector<Tensor> g;
      for (const Tensor& t : in)
        g.push_back(t.detach().to_device(Device::cuda()).set_requires_grad(true));
      const Tensor y = f(g);  // (2, 16, 96)
      autograd::backward(y, gy.to_dtype(y.dtype()).to_device(Device::cuda()));
      ops::bias_grad_columns = before;
      bias_grads[columns] = g[2].grad().to_doubles();
      weight_grads[columns] = g[1].grad().to_doubles();
    }
    // The switch's sums are the column-sum kernel's over the gradient rounded to bf16 (the
    // operand the product reads), bit for bit: the kernel really ran.
    const Tensor g16 = gy.to_dtype(DType::BF16).to_device(Device::cuda());  // (2, 16, 96)
    Tensor sums = Tensor::empty({96}, DType::F32, Device::cuda());           // (96)
    ops::bias_grad_kernels.forward(Device::cuda())(g16, sums);
    REQUIRE(bias_grads[1] == sums.to_doubles());
    REQUIRE(test::closeness(bias_grads[1], bias_grads[0], 2e-2, 0.1) <= 1);
    REQUIRE(test::closeness(weight_grads[1], weight_grads[0], 2e-2, 0.1) <= 1);
  }
}
