// One case per op of ops/op_list.h, built by expanding the list: an op added to the list without
// a case here does not compile. Every op runs on the GPU against its CPU reference ([cuda]:
// skipped, and reported as skipped, without a GPU), and every op with a backward passes an fp64
// gradient check on the CPU. The hand-written [cuda] tests elsewhere add what one case per op
// cannot: many shapes, bf16 operands, determinism, error messages.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "core/concat_flat.h"
#include "ops/op_list.h"
#include "ops/shape_ops.h"
#include "tests/catch.h"
#include "tests/cuda_compare.h"
#include "tests/helpers.h"

using namespace sinklab;
using namespace sinklab::test;

namespace {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  OpFn f;                                        // the op on inputs that share one device
  std::function<std::vector<Tensor>(DType)> inputs;  // random inputs of a dtype, on the CPU
  bool gradient = true;                          // f is differentiable: gradient-checked
};

Tensor grad_input(const Shape& shape, uint64_t stream, DType dt) {
  return random_tensor(shape, stream, dt, 1.0, true);
}
Tensor plain_input(const Shape& shape, uint64_t stream, DType dt) {
  return random_tensor(shape, stream, dt, 1.0, false);
}
Tensor ids(const std::vector<int>& values, const Shape& shape) {
  return Tensor::from_ints(std::vector<int32_t>(values.begin(), values.end()), shape);
}
// A copy an in-place op may write (its input stays as the other device's run needs it).
Tensor copy_of(const Tensor& t) { return t.detach().copy_contiguous(); }

constexpr int64_t B = 2, T = 5, NH = 2, HS = 4, C = NH * HS;

OpCase add_case() {
  return {[](const auto& in) { return ops::add(in[0], in[1]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 1, dt), grad_input({C}, 2, dt)}; }};
}
OpCase mul_case() {
  return {[](const auto& in) { return ops::mul(in[0], in[1]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 3, dt), grad_input({C}, 4, dt)}; }};
}
OpCase scale_case() {
  return {[](const auto& in) { return ops::scale(in[0], -0.7); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 5, dt)}; }};
}
OpCase sum_case() {
  return {[](const auto& in) { return ops::sum(in[0]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 6, dt)}; }};
}
OpCase matmul_case() {
  return {[](const auto& in) { return ops::matmul(in[0], in[1], false, true); },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 7, dt), grad_input({B, 3, C}, 8, dt)};
          }};
}
OpCase bias_grad_case() {  // linear's bias gradient: a column sum (no public entry of its own)
  return {[](const auto& in) {
            Tensor gb = Tensor::empty({C}, in[0].dtype(), in[0].device());
            ops::bias_grad_kernels.forward(in[0].device())(in[0], gb);
            return gb;
          },
          [](DType dt) { return std::vector{plain_input({B * T, C}, 9, dt)}; }, false};
}
OpCase linear_case() {
  return {[](const auto& in) { return ops::linear(in[0], in[1], in[2]); },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 10, dt), grad_input({3, C}, 11, dt),
                               grad_input({3}, 12, dt)};
          }};
}
OpCase weight_bias_grad_case() {  // linear's weight and bias gradients from one product
  return {[](const auto& in) {
            const Tensor g = in[0].reshape_view({1, B * T, C}), x = in[1].reshape_view({1, B * T, 6});
            Tensor gw = copy_of(in[2]).reshape_view({1, C, 6});  // accumulated into
            Tensor gb = Tensor::empty({C}, g.dtype(), g.device());
            const Tensor g3 = ops::tensor_core_operand(g);
            ops::weight_bias_grad_kernels.forward(g.device())(g, g3, x, gw, true, gb);
            return concat_flat({gw, gb});  // (C * 6 + C)
          },
          [](DType dt) {
            return std::vector{plain_input({B, T, C}, 60, dt), plain_input({B, T, 6}, 61, dt),
                               plain_input({C, 6}, 62, dt)};
          },
          false};
}
OpCase bf16_round_case() {  // compared in f32
  return {[](const auto& in) {
            Tensor out = Tensor::empty(in[0].shape(), DType::BF16, in[0].device());
            ops::bf16_round_kernels.forward(in[0].device())(in[0], out);
            return out.to_device(Device::cpu()).to_dtype(DType::F32).to_device(in[0].device());
          },
          [](DType) { return std::vector{plain_input({B, T, C}, 13, DType::F32)}; }, false};
}
// GPT-2's FFN rows (ops/mlp.h), on (1, rows, .) operands; both outputs compared in one sum.
OpCase gelu_linear_case() {
  return {[](const auto& in) {
            const Tensor x = in[0].reshape_view({1, B * T, C}), w = in[1].reshape_view({1, 6, C});
            Tensor pre = Tensor::empty({1, B * T, 6}, x.dtype(), x.device());
            Tensor hidden = Tensor::empty({1, B * T, 6}, x.dtype(), x.device());
            ops::gelu_linear_kernels.forward(x.device())(x, w, in[2], pre, hidden);
            return ops::add(hidden, ops::scale(pre, 0.25));
          },
          [](DType dt) {
            return std::vector{plain_input({B, T, C}, 54, dt), plain_input({6, C}, 55, dt),
                               plain_input({6}, 56, dt)};
          },
          false};
}
OpCase gelu_grad_product_case() {
  return {[](const auto& in) {
            const Tensor g = in[0].reshape_view({1, B * T, C}), w = in[1].reshape_view({1, C, 6});
            const Tensor pre = in[2].reshape_view({1, B * T, 6});
            Tensor grad_pre = Tensor::empty(pre.shape(), pre.dtype(), pre.device());
            Tensor grad_bias = Tensor::empty({6}, pre.dtype(), pre.device());
            ops::gelu_grad_product_kernels.forward(g.device())(g, w, pre, grad_pre, &grad_bias);
            return ops::add(grad_pre.reshape_view({B * T, 6}), grad_bias);
          },
          [](DType dt) {
            return std::vector{plain_input({B, T, C}, 57, dt), plain_input({C, 6}, 58, dt),
                               plain_input({B * T, 6}, 59, dt)};
          },
          false};
}
OpCase gelu_case() {
  return {[](const auto& in) { return ops::gelu(in[0]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 14, dt)}; }};
}
OpCase silu_case() {
  return {[](const auto& in) { return ops::silu(in[0]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 15, dt)}; }};
}
OpCase swiglu_case() {
  return {[](const auto& in) { return ops::swiglu(in[0], in[1]); },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 16, dt), grad_input({B, T, C}, 17, dt)};
          }};
}
OpCase swiglu_packed_case() {
  return {[](const auto& in) { return ops::swiglu_packed(in[0]); },
          [](DType dt) { return std::vector{grad_input({B, T, 2 * C}, 54, dt)}; }};
}
OpCase bias_gelu_case() {
  return {[](const auto& in) { return ops::bias_gelu(in[0], in[1]); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 18, dt), grad_input({C}, 19, dt)}; }};
}
OpCase layernorm_case() {
  return {[](const auto& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5); },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 20, dt), grad_input({C}, 21, dt),
                               grad_input({C}, 22, dt)};
          }};
}
OpCase add_layernorm_case() {
  return {[](const auto& in) { return ops::add_layernorm(in[0], in[1], in[2], in[3], 1e-5).normed; },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 23, dt), grad_input({B, T, C}, 24, dt),
                               grad_input({C}, 25, dt), grad_input({C}, 26, dt)};
          }};
}
OpCase rmsnorm_case() {
  return {[](const auto& in) { return ops::rmsnorm(in[0], in[1], 1e-6); },
          [](DType dt) { return std::vector{grad_input({B, T, C}, 27, dt), grad_input({C}, 28, dt)}; }};
}
OpCase headwise_rmsnorm_case() {
  return {[](const auto& in) { return ops::headwise_rmsnorm(in[0], in[1], 1e-6); },
          [](DType dt) {
            return std::vector{grad_input({B, T, NH, HS}, 29, dt), grad_input({NH, HS}, 30, dt)};
          }};
}
OpCase add_rmsnorm_case() {
  return {[](const auto& in) { return ops::add_rmsnorm(in[0], in[1], in[2], 1e-6).normed; },
          [](DType dt) {
            return std::vector{grad_input({B, T, C}, 31, dt), grad_input({B, T, C}, 32, dt),
                               grad_input({C}, 33, dt)};
          }};
}
OpCase embedding_case() {
  return {[](const auto& in) { return ops::embedding(in[0], in[1]); },
          [](DType dt) {
            return std::vector{ids({0, 3, 3, 1, 6, 2}, {2, 3}), grad_input({7, C}, 34, dt)};
          }};
}
OpCase rope_case() {
  return {[](const auto& in) { return ops::rope(in[0], 10000.0, 0); },
          [](DType dt) { return std::vector{grad_input({B, T, NH, HS}, 35, dt)}; }};
}
OpCase rope_qkv_case() {
  return {[](const auto& in) { return ops::rope_qkv(in[0], NH, 10000.0, 3); },
          [](DType dt) { return std::vector{grad_input({B, T, 3 * C}, 55, dt)}; }};
}
ops::AttentionOptions isolating() {
  ops::AttentionOptions o;
  o.isolate_positions = {3};
  return o;
}
OpCase attention_case() {
  return {[](const auto& in) { return ops::attention(in[0], in[1], in[2], isolating()); },
          [](DType dt) {
            return std::vector{grad_input({B, T, NH, HS}, 36, dt), grad_input({B, T, NH, HS}, 37, dt),
                               grad_input({B, T, NH, HS}, 38, dt)};
          }};
}
OpCase attention_qkv_case() {
  return {[](const auto& in) { return ops::attention_qkv(in[0], NH); },
          [](DType dt) { return std::vector{grad_input({B, T, 3 * C}, 39, dt)}; }};
}
OpCase attention_probabilities_case() {
  return {[](const auto& in) { return ops::attention_probabilities(in[0], in[1], isolating()); },
          [](DType dt) {
            return std::vector{plain_input({B, T, NH, HS}, 40, dt), plain_input({B, T, NH, HS}, 41, dt)};
          },
          false};
}
OpCase attention_key_mass_case() {  // from the lse attention saves
  return {[](const auto& in) {
            Tensor lse;
            (void)ops::attention(in[0], in[1], in[2], {}, &lse);
            return ops::attention_key_mass(in[0], in[1], lse, 0);
          },
          [](DType dt) {
            return std::vector{plain_input({B, T, NH, HS}, 42, dt), plain_input({B, T, NH, HS}, 43, dt),
                               plain_input({B, T, NH, HS}, 44, dt)};
          },
          false};
}
OpCase cross_entropy_case() {
  return {[](const auto& in) { return ops::cross_entropy(in[0], in[1], -1); },
          [](DType dt) {
            return std::vector{grad_input({B, T, 7}, 45, dt),
                               ids({0, 6, 2, -1, 3, 3, 1, 5, 4, 0}, {B, T})};
          }};
}
OpCase row_statistics_case() {
  return {[](const auto& in) { return ops::row_statistics(in[0]); },
          [](DType dt) { return std::vector{plain_input({B, T, C}, 46, dt)}; }, false};
}
OpCase abs_order_statistics_case() {
  return {[](const auto& in) { return ops::abs_order_statistics(in[0], {0, 40, B * T * C - 1}); },
          [](DType dt) { return std::vector{plain_input({B, T, C}, 47, dt)}; }, false};
}
OpCase rows_and_abs_order_statistics_case() {
  return {[](const auto& in) {
            const ops::RowsAndOrder r =
                ops::rows_and_abs_order_statistics(in[0], {1, 40, B * T * C - 1});
            return concat_flat({r.rows, r.order});  // (R * 5 + 3)
          },
          [](DType dt) { return std::vector{plain_input({B, T, C}, 48, dt)}; }, false};
}
OpCase pooled_variance_case() {
  // Row statistics of 5 groups (means, variances, ...), as a norm would leave them: (B, T, 5, 5)
  return {[](const auto& in) { return ops::pooled_variance(in[0]); },
          [](DType dt) { return std::vector{plain_input({B, T, 5, 5}, 49, dt)}; }, false};
}
OpCase adamw_update_case() {  // two steps, so that the moments feed the second; the second
                               // clips (grad_scale)
  return {[](const auto& in) {
            Tensor w = copy_of(in[0]), m = copy_of(in[2]), v = copy_of(in[3]);
            Tensor mask = ids({1, 0, 1, 1, 0, 1, 1, 1}, {8}).to_device(w.device());
            for (int t = 1; t <= 2; ++t) {
              const ops::AdamWHyper h{1e-2, 0.9, 0.95, 1e-8, 0.1,
                                      static_cast<float>(1 - std::pow(0.9, t)),
                                      static_cast<float>(1 - std::pow(0.95, t)),
                                      t == 2 ? 0.37f : 1.0f};
              ops::adamw_update(w, in[1], m, v, mask, h);
            }
            return w;
          },
          [](DType) {
            Tensor v = plain_input({8}, 51, DType::F32);
            return std::vector{plain_input({8}, 48, DType::F32), plain_input({8}, 49, DType::F32),
                               plain_input({8}, 50, DType::F32), ops::mul(v, v).detach()};
          },
          false};
}
OpCase sum_of_squares_case() {
  return {[](const auto& in) {
            return Tensor::from_doubles({ops::sum_of_squares(in[0])}, {1}, DType::F64)
                .to_device(in[0].device());
          },
          [](DType) { return std::vector{plain_input({3, 70001}, 52, DType::F32)}; }, false};
}
OpCase scale_in_place_case() {
  return {[](const auto& in) {
            Tensor x = copy_of(in[0]);
            ops::scale_in_place(x, 0.37);
            return x;
          },
          [](DType) { return std::vector{plain_input({B, T, C}, 53, DType::F32)}; }, false};
}

OpCase sum_of_squares_into_case() {
  return {[](const auto& in) {
            Tensor out = Tensor::zeros({1}, DType::F64, in[0].device());  // (1)
            ops::sum_of_squares_into(in[0], out);
            return out;
          },
          [](DType) { return std::vector{plain_input({3, 70001}, 54, DType::F32)}; }, false};
}
OpCase adamw_update_scheduled_case() {  // three steps: plain, clipped (norm > max_norm), and
                                        // skipped (a non-finite loss: w stays)
  return {[](const auto& in) {
            Tensor w = copy_of(in[0]), m = copy_of(in[2]), v = copy_of(in[3]);
            const Device d = w.device();
            Tensor mask = ids({1, 0, 1, 1, 0, 1, 1, 1}, {8}).to_device(d);
            const ops::AdamWConstants c{0.9, 0.95, 1e-8, 0.1, 0.5};
            const double sums[3] = {0.01, 4.0, 1.0};
            const double losses[3] = {2.5, 2.4, std::nan("")};
            for (int t = 1; t <= 3; ++t) {
              const Tensor schedule =  // (3) lr, 1 - beta1^t, 1 - beta2^t
                  Tensor::from_doubles({1e-2 * t, 1 - std::pow(0.9, t), 1 - std::pow(0.95, t)},
                                       {3}, DType::F32).to_device(d);
              const Tensor results =  // (2) loss, sum of squares
                  Tensor::from_doubles({losses[t - 1], sums[t - 1]}, {2}, DType::F64).to_device(d);
              ops::adamw_update_scheduled(w, in[1], m, v, mask, c, schedule, results);
            }
            return concat_flat({w, m, v});
          },
          [](DType) {
            Tensor v = plain_input({8}, 58, DType::F32);
            return std::vector{plain_input({8}, 55, DType::F32), plain_input({8}, 56, DType::F32),
                               plain_input({8}, 57, DType::F32), ops::mul(v, v).detach()};
          },
          false};
}

struct NamedCase {
  const char* name;
  ops::OpGrad grad;
  OpCase c;
};

std::vector<NamedCase> every_op() {
  return {
#define SINKLAB_OP_CASE(name, grad, cuda) {#name, ops::OpGrad::grad, name##_case()},
      SINKLAB_OPS(SINKLAB_OP_CASE)
#undef SINKLAB_OP_CASE
  };
}

}  // namespace

TEST_CASE("op list: names match the rows, one case per op", "[ops][op_list]") {
  std::vector<std::string> row_names;
#define SINKLAB_OP_ROW_NAME(op, grad, cuda) row_names.push_back(ops::op##_kernels.name);
  SINKLAB_OPS(SINKLAB_OP_ROW_NAME)
#undef SINKLAB_OP_ROW_NAME
  REQUIRE(row_names.size() == static_cast<size_t>(ops::kOpCount));
  const std::vector<NamedCase> cases = every_op();
  REQUIRE(cases.size() == row_names.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("op " << i);
    REQUIRE(row_names[i] == cases[i].name);  // a row's name is its variable's
    REQUIRE(std::string(ops::kOps[i].name) == cases[i].name);
    // Rows with a backward are gradient-checked; no case may quietly skip it.
    if (cases[i].grad == ops::OpGrad::Backward) REQUIRE(cases[i].c.gradient);
  }
}

TEST_CASE("op list: every *_kernels row defined in ops/*.cpp is in ops/op_list.h",
          "[ops][op_list]") {
  std::set<std::string> listed;
  for (const ops::OpInfo& op : ops::kOps) listed.insert(op.name);
  const std::regex row(R"((?:OpKernels|UpdateKernels)<[^>]*>\s+(\w+)_kernels\s*\{)");
  int found = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(SINKLAB_SOURCE_DIR) + "/ops")) {
    if (entry.path().extension() != ".cpp") continue;
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    for (std::sregex_iterator it(text.begin(), text.end(), row), end; it != end; ++it) {
      const std::string name = (*it)[1];
      INFO(entry.path().string() << " defines " << name << "_kernels");
      REQUIRE(listed.count(name) == 1);  // add it to SINKLAB_OPS in ops/op_list.h
      ++found;
    }
  }
  REQUIRE(found == ops::kOpCount);
}

TEST_CASE("op list: every op with a backward passes the fp64 gradient check", "[ops][op_list]") {
  for (const NamedCase& op : every_op()) {
    if (!op.c.gradient) continue;
    INFO("op " << op.name);
    require_gradients(op.c.f, op.c.inputs(DType::F64));
  }
}

TEST_CASE("op list: every op on the GPU matches its CPU reference", "[cuda][op_list]") {
  SINKLAB_REQUIRE_CUDA();
  for (const NamedCase& op : every_op()) {
    INFO("op " << op.name);
    CudaCompareOptions options = tolerance(DType::F32, B * T);
    options.check_backward = op.c.gradient;
    require_cuda_matches_cpu(op.c.f, op.c.inputs(DType::F32), options);
  }
}
