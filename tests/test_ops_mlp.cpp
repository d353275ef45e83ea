// gelu_mlp (GPT-2's FFN as one op, ops/mlp.h) on the CPU: the same values and gradients as the
// three ops it replaces (linear, bias_gelu, linear), the fp64 gradient check with and without
// biases, weight gradients added in place into gradient buffers, and bad input by error.
#include "autograd/engine.h"
#include "ops/activations.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/reduce.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;
using test::require_error;
using test::require_gradients;

namespace {

// x (2, 5, 8), w_fc (12, 8), b_fc (12), w_proj (8, 12), b_proj (8), requiring grad.
std::vector<Tensor> mlp_inputs(DType dt) {
  return {random_tensor({2, 5, 8}, 61, dt, 1.0, true), random_tensor({12, 8}, 62, dt, 0.5, true),
          random_tensor({12}, 63, dt, 1.0, true), random_tensor({8, 12}, 64, dt, 0.5, true),
          random_tensor({8}, 65, dt, 1.0, true)};
}

Tensor composed(const std::vector<Tensor>& in) {
  return ops::linear(ops::bias_gelu(ops::linear(in[0], in[1]), in[2]), in[3], in[4]);
}

}  // namespace

TEST_CASE("gelu_mlp equals linear, bias_gelu, linear: values, hidden and every gradient",
          "[ops][mlp]") {
  for (DType dt : {DType::F64, DType::F32}) {
    INFO((dt == DType::F64 ? "f64" : "f32"));
    const std::vector<Tensor> a = mlp_inputs(dt), b = mlp_inputs(dt);
    const ops::GeluMlp fused = ops::gelu_mlp(a[0], a[1], a[2], a[3], a[4]);
    const Tensor reference = composed(b);
    const double rtol = dt == DType::F64 ? 1e-12 : 1e-5;
    require_close(fused.y, reference, rtol, rtol);
    REQUIRE(fused.hidden.shape() == Shape{2, 5, 12});
    REQUIRE_FALSE(fused.hidden.requires_grad());
    require_close(fused.hidden, ops::bias_gelu(ops::linear(b[0], b[1]), b[2]).detach(), rtol,
                  rtol);
    // A non-uniform seed: sum(y * y).
    autograd::backward(ops::sum(ops::mul(fused.y, fused.y)));
    autograd::backward(ops::sum(ops::mul(reference, reference)));
    for (size_t i = 0; i < a.size(); ++i) {
      INFO("input " << i);
      require_close(a[i].grad(), b[i].grad(), rtol, rtol);
    }
  }
}

TEST_CASE("gelu_mlp passes the fp64 gradient check, with and without biases", "[ops][mlp]") {
  require_gradients(
      [](const auto& in) { return ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]).y; },
      mlp_inputs(DType::F64));
  std::vector<Tensor> no_bias = mlp_inputs(DType::F64);
  require_gradients(
      [](const auto& in) { return ops::gelu_mlp(in[0], in[1], Tensor(), in[2], Tensor()).y; },
      {no_bias[0], no_bias[1], no_bias[3]});
  // Without biases: hidden = gelu(x w_fc^T).
  const ops::GeluMlp m = ops::gelu_mlp(no_bias[0], no_bias[1], Tensor(), no_bias[3], Tensor());
  require_close(m.hidden, ops::gelu(ops::linear(no_bias[0], no_bias[1])).detach(), 1e-12, 1e-12);
}

TEST_CASE("gelu_mlp adds both weight gradients into their gradient buffers in place",
          "[ops][mlp][autograd]") {
  std::vector<Tensor> in = mlp_inputs(DType::F64);
  autograd::backward(ops::sum(ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]).y));
  const std::vector<double> fc_once = in[1].grad().to_doubles();
  const std::vector<double> proj_once = in[3].grad().to_doubles();
  Tensor fc_buffer = Tensor::zeros(in[1].shape(), DType::F64, Device::cpu());    // (12, 8)
  Tensor proj_buffer = Tensor::zeros(in[3].shape(), DType::F64, Device::cpu());  // (8, 12)
  in[1].set_grad(fc_buffer);
  in[3].set_grad(proj_buffer);
  for (int pass = 0; pass < 2; ++pass)
    autograd::backward(ops::sum(ops::gelu_mlp(in[0], in[1], in[2], in[3], in[4]).y));
  REQUIRE(in[1].grad().raw_data() == fc_buffer.raw_data());
  REQUIRE(in[3].grad().raw_data() == proj_buffer.raw_data());
  const std::vector<double> fc_twice = fc_buffer.to_doubles();
  const std::vector<double> proj_twice = proj_buffer.to_doubles();
  for (size_t i = 0; i < fc_once.size(); ++i) REQUIRE(fc_twice[i] == Approx(2 * fc_once[i]));
  for (size_t i = 0; i < proj_once.size(); ++i)
    REQUIRE(proj_twice[i] == Approx(2 * proj_once[i]));
}

TEST_CASE("gelu_mlp refuses shapes that do not chain and mixed dtypes, naming them",
          "[ops][mlp]") {
  const std::vector<Tensor> in = mlp_inputs(DType::F64);
  const Tensor wrong_proj = random_tensor({8, 11}, 66, DType::F64);
  require_error<ShapeError>([&] { (void)ops::gelu_mlp(in[0], in[1], in[2], wrong_proj, in[4]); },
                            {"gelu_mlp", "w_fc", "w_proj", "(8, 11)"});
  const Tensor wrong_bias = random_tensor({11}, 67, DType::F64);
  require_error<ShapeError>([&] { (void)ops::gelu_mlp(in[0], in[1], wrong_bias, in[3], in[4]); },
                            {"gelu_mlp", "b_fc"});
  const Tensor x32 = random_tensor({2, 5, 8}, 68, DType::F32);
  require_error<DTypeError>([&] { (void)ops::gelu_mlp(x32, in[1], in[2], in[3], in[4]); },
                            {"gelu_mlp"});
}
