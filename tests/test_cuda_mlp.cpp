// [cuda] gelu_mlp (GPT-2's FFN as one op, ops/mlp.h) under bf16: the composed rows and
// cuBLASLt's GELU epilogues (run.gemm_epilogues) against the CPU reference, and against each
// other: within bf16's rounding, but not bit-identical (so the epilogue path really ran).
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

// Sets ops::gemm_epilogues_enabled for a scope.
class EpilogueGuard {
 public:
  explicit EpilogueGuard(bool on) : before_(ops::gemm_epilogues_enabled) {
    ops::gemm_epilogues_enabled = on;
  }
  ~EpilogueGuard() { ops::gemm_epilogues_enabled = before_; }

 private:
  bool before_;
};

// x (2, 24, 256), w_fc (1024, 256), b_fc (1024), w_proj (256, 1024), b_proj (256): GPT-2's
// shapes at C = 256, weights at GPT-2's scale; 48 rows, so that a weight gradient's sum of bf16
// terms stays within the loose tolerance (its rounding grows with the rows it sums).
std::vector<Tensor> mlp_inputs() {
  return {random_tensor({2, 24, 256}, 71, DType::F32, 1.0, true),
          random_tensor({1024, 256}, 72, DType::F32, 0.06, true),
          random_tensor({1024}, 73, DType::F32, 0.5, true),
          random_tensor({256, 1024}, 74, DType::F32, 0.03, true),
          random_tensor({256}, 75, DType::F32, 0.5, true)};
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
  test::CudaCompareOptions loose;  // bf16 operands, pre and hidden (as the GPT-2 FFN test)
  loose.rtol = 2e-2;
  loose.atol = 8e-2;
  PrecisionGuard bf16(Precision::BF16);
  const auto f = [](const auto& in) { return ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]).y; };
  for (bool epilogues : {false, true}) {
    INFO("gemm_epilogues " << epilogues);
    EpilogueGuard guard(epilogues);
    test::require_cuda_matches_cpu(f, mlp_inputs(), loose);
    // Without biases (GELU_AUX and DGELU without the bias terms).
    test::require_cuda_matches_cpu(
        [](const auto& in) { return ops::gelu_mlp(in[0], in[1], Tensor(), in[3], Tensor()).y; },
        mlp_inputs(), loose);
  }
  // The two GPU paths against each other: one bf16 rounding of pre or hidden apart at most.
  GpuRun composed, fused;
  {
    EpilogueGuard off(false);
    composed = run_on_gpu(mlp_inputs());
  }
  {
    EpilogueGuard on(true);
    fused = run_on_gpu(mlp_inputs());
  }
  REQUIRE(test::closeness(fused.hidden, composed.hidden, 1.0 / 64, 1.0 / 64) <= 1);
  REQUIRE(test::closeness(fused.y, composed.y, 2e-2, 2e-2) <= 1);
  for (size_t i = 0; i < fused.grads.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(test::closeness(fused.grads[i], composed.grads[i], 2e-2, 8e-2) <= 1);
  }
  // cuBLASLt's GELU and ours round differently somewhere among 49,152 hidden values, and its
  // GELU derivative differently among w_fc's gradients: the epilogues really ran.
  REQUIRE(fused.hidden != composed.hidden);
  REQUIRE(fused.grads[1] != composed.grads[1]);
}
