// gelu, silu, swiglu, bias_gelu and embedding: forward against a naive fp64 evaluation (f64 and
// f32), backward by gradient check and f32 against f64, the embedding table gradient (repeated
// ids, determinism), and bad input by error. swiglu_packed against swiglu on the two halves of
// each row (bit for bit), forward and backward.
#include <cmath>

#include "autograd/engine.h"
#include "core/random.h"
#include "ops/activations.h"
#include "ops/embedding.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;
using test::require_error;
using test::require_gradients;

namespace {

double naive_gelu(double x) {
  const double pi = std::acos(-1.0);
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / pi) * (x + 0.044715 * x * x * x)));
}

double naive_silu(double x) { return x / (1 + std::exp(-x)); }

// Random values of stddev 3 with extremes appended, so saturation and overflow paths run.
Tensor activation_input(const Shape& shape, uint64_t stream, DType dtype) {
  std::vector<double> v = random_tensor(shape, stream, DType::F64, 3.0).to_doubles();
  const double extremes[] = {-800.0, -40.0, -10.0, 0.0, 1e-8, 10.0, 40.0, 800.0};
  for (size_t i = 0; i < 8 && i < v.size(); ++i) v[v.size() - 1 - i] = extremes[i];
  return Tensor::from_doubles(v, shape, dtype);
}

double tol_for(DType dtype) { return dtype == DType::F64 ? 1e-12 : 1e-6; }

}  // namespace

TEST_CASE("gelu and silu forward match a naive fp64 evaluation", "[ops]") {
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& shape : {Shape{3, 7}, Shape{2, 5, 3}, Shape{1}, Shape{}}) {
      Tensor x = activation_input(shape, 200, dtype);
      std::vector<double> xv = x.to_doubles(), g(xv.size()), s(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) {
        g[i] = naive_gelu(xv[i]);
        s[i] = naive_silu(xv[i]);
      }
      INFO(x.str());
      Tensor yg = ops::gelu(x), ys = ops::silu(x);
      REQUIRE(yg.shape() == shape);
      REQUIRE(yg.dtype() == dtype);
      require_close(yg, g, tol_for(dtype), tol_for(dtype));
      require_close(ys, s, tol_for(dtype), tol_for(dtype));
    }
}

TEST_CASE("swiglu forward equals silu(gate) * up", "[ops]") {
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& shape : {Shape{3, 7}, Shape{2, 3, 5}}) {
      Tensor gate = activation_input(shape, 210, dtype);
      Tensor up = random_tensor(shape, 211, dtype);
      std::vector<double> gv = gate.to_doubles(), uv = up.to_doubles(), expected(gv.size());
      for (size_t i = 0; i < gv.size(); ++i) expected[i] = gv[i] / (1 + std::exp(-gv[i])) * uv[i];
      INFO(gate.str());
      require_close(ops::swiglu(gate, up), expected, tol_for(dtype), tol_for(dtype));
    }
}

TEST_CASE("gelu, silu and swiglu backward (gradcheck)", "[ops][grad]") {
  Tensor x = random_tensor({3, 7}, 220, DType::F64, 2.0, true);
  Tensor up = random_tensor({3, 7}, 221, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::gelu(in[0]); }, {x});
  require_gradients([](const auto& in) { return ops::silu(in[0]); }, {x});
  require_gradients([](const auto& in) { return ops::swiglu(in[0], in[1]); }, {x, up});
  Tensor up_fixed = random_tensor({3, 7}, 222);
  require_gradients([&](const auto& in) { return ops::swiglu(in[0], up_fixed); }, {x});
  require_gradients([&](const auto& in) { return ops::swiglu(up_fixed, in[0]); }, {up});
  // The same tensor as both operands: the two gradients add up.
  require_gradients([](const auto& in) { return ops::swiglu(in[0], in[0]); }, {x});
  // f32 backward agrees with f64.
  Tensor xl = random_tensor({4, 9}, 223, DType::F64, 2.0), ul = random_tensor({4, 9}, 224);
  Tensor w = random_tensor({4, 9}, 225);
  test::require_f32_gradients_match([](const auto& in) { return ops::gelu(in[0]); }, {xl}, {true},
                                    w);
  test::require_f32_gradients_match([](const auto& in) { return ops::silu(in[0]); }, {xl}, {true},
                                    w);
  test::require_f32_gradients_match([](const auto& in) { return ops::swiglu(in[0], in[1]); },
                                    {xl, ul}, {true, true}, w);
}

TEST_CASE("swiglu_packed equals swiglu on the halves of each row, bit for bit", "[ops][grad]") {
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& shape : {Shape{3, 14}, Shape{2, 3, 10}, Shape{2}}) {
      INFO(dtype_name(dtype) << " " << shape_str(shape));
      const int last = static_cast<int>(shape.size()) - 1;
      const int64_t F = shape.back() / 2;
      Shape half = shape;
      half.back() = F;
      Tensor gate_up = activation_input(shape, 212, dtype);  // (..., 2F): gate | up
      gate_up.set_requires_grad(true);
      const Tensor grad = random_tensor(half, 213, dtype);  // (..., F)
      const Tensor y = ops::swiglu_packed(gate_up);          // (..., F)
      REQUIRE(y.shape() == half);
      REQUIRE(y.dtype() == dtype);
      autograd::backward(y, grad);
      Tensor gate = gate_up.detach().narrow_view(last, 0, F).copy_contiguous();  // (..., F)
      Tensor up = gate_up.detach().narrow_view(last, F, F).copy_contiguous();    // (..., F)
      gate.set_requires_grad(true);
      up.set_requires_grad(true);
      const Tensor expected = ops::swiglu(gate, up);  // (..., F)
      REQUIRE(y.to_doubles() == expected.to_doubles());
      autograd::backward(expected, grad);
      const Tensor& packed_grad = gate_up.grad();  // (..., 2F): d gate | d up
      REQUIRE(packed_grad.narrow_view(last, 0, F).to_doubles() == gate.grad().to_doubles());
      REQUIRE(packed_grad.narrow_view(last, F, F).to_doubles() == up.grad().to_doubles());
    }
  const Tensor gate_up = random_tensor({3, 14}, 214, DType::F64, 2.0, true);
  require_gradients([](const auto& in) { return ops::swiglu_packed(in[0]); }, {gate_up});
  const Tensor gate_up3 = random_tensor({2, 3, 8}, 215, DType::F64, 2.0, true);
  require_gradients([](const auto& in) { return ops::swiglu_packed(in[0]); }, {gate_up3});
}

TEST_CASE("bias_gelu equals gelu(x + bias), forward and backward", "[ops][grad]") {
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& shape : {Shape{3, 7}, Shape{2, 5, 4}, Shape{1, 1}}) {
      Tensor x = activation_input(shape, 260, dtype);
      Tensor bias = random_tensor({shape.back()}, 261, dtype);
      std::vector<double> xv = x.to_doubles(), bv = bias.to_doubles(), expected(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) {
        // The sum rounded to the dtype first, as the product's bias epilogue would leave it.
        const double sum = dtype == DType::F32
                               ? static_cast<double>(static_cast<float>(xv[i]) +
                                                     static_cast<float>(bv[i % bv.size()]))
                               : xv[i] + bv[i % bv.size()];
        expected[i] = naive_gelu(sum);
      }
      INFO(x.str());
      Tensor y = ops::bias_gelu(x, bias);
      REQUIRE(y.shape() == shape);
      REQUIRE(y.dtype() == dtype);
      require_close(y, expected, tol_for(dtype), tol_for(dtype));
    }
  Tensor x = random_tensor({4, 6}, 262, DType::F64, 2.0, true);
  Tensor bias = random_tensor({6}, 263, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::bias_gelu(in[0], in[1]); }, {x, bias});
  Tensor x3 = random_tensor({2, 3, 5}, 264, DType::F64, 2.0, true);
  Tensor b5 = random_tensor({5}, 265, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::bias_gelu(in[0], in[1]); }, {x3, b5});
  Tensor xl = random_tensor({5, 8}, 266, DType::F64, 2.0), bl = random_tensor({8}, 267);
  test::require_f32_gradients_match([](const auto& in) { return ops::bias_gelu(in[0], in[1]); },
                                    {xl, bl}, {true, true}, random_tensor({5, 8}, 268));
}

TEST_CASE("bias_gelu rejects bad input naming the op and the argument", "[ops][errors]") {
  Tensor x = random_tensor({3, 7}, 270);
  require_error<ShapeError>([&] { ops::bias_gelu(x, random_tensor({6}, 271)); },
                            {"bias_gelu", "bias", "(7,)"});
  require_error<DTypeError>([&] { ops::bias_gelu(x, random_tensor({7}, 272, DType::F32)); },
                            {"bias_gelu", "bias", "f32(7,)", "f64(3, 7)"});
  require_error<DTypeError>(
      [&] { ops::bias_gelu(x.to_dtype(DType::BF16), random_tensor({7}, 273, DType::F32)); },
      {"bias_gelu", "x", "bf16", "to_dtype"});
  Tensor strided = random_tensor({7, 3}, 274).transpose_view(0, 1);  // (3, 7), strided
  require_error<ShapeError>([&] { ops::bias_gelu(strided, random_tensor({7}, 275)); },
                            {"bias_gelu", "x", "contiguous"});
}

TEST_CASE("activations reject bad input naming the op and the shapes", "[ops][errors]") {
  Tensor gate = random_tensor({3, 7}, 230);
  require_error<ShapeError>([&] { ops::swiglu(gate, random_tensor({3, 6}, 231)); },
                            {"swiglu", "(3, 7)", "(3, 6)"});
  require_error<DTypeError>([&] { ops::swiglu(gate, random_tensor({3, 7}, 232, DType::F32)); },
                            {"swiglu", "f64(3, 7)", "f32(3, 7)"});
  Tensor strided = random_tensor({7, 3}, 233).transpose_view(0, 1);  // (3, 7), strided
  require_error<ShapeError>([&] { ops::gelu(strided); }, {"gelu", "(3, 7)", "contiguous"});
  require_error<ShapeError>([&] { ops::silu(strided); }, {"silu", "(3, 7)", "contiguous"});
  require_error<ShapeError>([&] { ops::swiglu(gate, strided); },
                            {"swiglu", "up", "(3, 7)", "contiguous"});
  Tensor ints = Tensor::from_ints({1, 2, 3}, {3});
  require_error<DTypeError>([&] { ops::gelu(ints); }, {"gelu", "i32(3,)"});
  require_error<DTypeError>([&] { ops::swiglu(ints, ints); }, {"swiglu", "i32(3,)"});
  require_error<ValueError>([&] { ops::silu(Tensor()); }, {"silu", "x"});
}

TEST_CASE("swiglu_packed rejects bad input naming the op and gate_up's shape", "[ops][errors]") {
  require_error<ShapeError>([] { ops::swiglu_packed(random_tensor({3, 7}, 234)); },
                            {"swiglu_packed", "gate_up", "(3, 7)", "(..., 2F)"});
  require_error<ShapeError>([] { ops::swiglu_packed(random_tensor({}, 235)); },
                            {"swiglu_packed", "gate_up", "(..., 2F)"});
  Tensor strided = random_tensor({8, 3}, 236).transpose_view(0, 1);  // (3, 8), strided
  require_error<ShapeError>([&] { ops::swiglu_packed(strided); },
                            {"swiglu_packed", "gate_up", "(3, 8)", "contiguous"});
  require_error<DTypeError>([] { ops::swiglu_packed(Tensor::from_ints({1, 2}, {2})); },
                            {"swiglu_packed", "gate_up", "i32(2,)"});
  const Tensor bf16 = random_tensor({3, 8}, 237, DType::F32).to_dtype(DType::BF16);
  require_error<DTypeError>([&] { ops::swiglu_packed(bf16); }, {"swiglu_packed", "bf16"});
}

TEST_CASE("embedding forward gathers table rows for ids of any shape", "[ops]") {
  const int64_t V = 11, C = 7;
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& ids_shape : {Shape{2, 3}, Shape{5}, Shape{}, Shape{2, 2, 3}}) {
      Tensor ids = rand_ints(ids_shape, RngKey{7, 240, 0}, static_cast<int32_t>(V));
      Tensor table = random_tensor({V, C}, 241, dtype);
      std::vector<double> idv = ids.to_doubles(), tv = table.to_doubles(), expected;
      for (double id : idv)
        for (int64_t c = 0; c < C; ++c) expected.push_back(tv[static_cast<int64_t>(id) * C + c]);
      INFO("ids " << ids.str() << " table " << table.str());
      Tensor out = ops::embedding(ids, table);
      Shape out_shape = ids_shape;
      out_shape.push_back(C);
      REQUIRE(out.shape() == out_shape);
      REQUIRE(out.dtype() == dtype);
      REQUIRE(out.to_doubles() == expected);  // a copy: exact
    }
}

TEST_CASE("embedding backward (gradcheck) and the table gradient with repeated ids",
          "[ops][grad]") {
  // Few rows and more tokens than rows: ids repeat, and some rows are never read.
  Tensor ids = Tensor::from_ints({3, 0, 3, 1, 3, 0, 4}, {7});
  Tensor table = random_tensor({6, 5}, 250, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::embedding(in[0], in[1]); }, {ids, table});
  Tensor ids2 = Tensor::from_ints({2, 2, 5, 0, 2, 5}, {2, 3});
  require_gradients([](const auto& in) { return ops::embedding(in[0], in[1]); }, {ids2, table});

  // Larger case in f32 against a naive scatter-add, and bit-for-bit repeatable.
  const int64_t V = 37, C = 9, N = 600;
  Tensor many = rand_ints({N}, RngKey{7, 251, 0}, static_cast<int32_t>(V));
  Tensor g = random_tensor({N, C}, 252, DType::F32);
  std::vector<double> idv = many.to_doubles(), gv = g.to_doubles(), expected(V * C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) expected[static_cast<int64_t>(idv[n]) * C + c] += gv[n * C + c];
  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    Tensor t = random_tensor({V, C}, 253, DType::F32, 1.0, true);
    autograd::backward(ops::embedding(many, t), g);
    REQUIRE(t.grad().shape() == Shape{V, C});
    require_close(t.grad(), expected, 1e-5, 1e-5);
    if (run == 0) first = t.grad().to_doubles();
    else REQUIRE(t.grad().to_doubles() == first);
  }
  REQUIRE(!many.requires_grad());  // ids get no gradient
}

TEST_CASE("embedding rejects a bad id naming it, its position and V", "[ops][errors]") {
  Tensor table = random_tensor({11, 4}, 260);
  Tensor too_big = Tensor::from_ints({1, 2, 3, 4, 5, 11}, {2, 3});
  require_error<ValueError>([&] { ops::embedding(too_big, table); },
                            {"embedding", "id 11", "(1, 2)", "(2, 3)", "V = 11"});
  Tensor negative = Tensor::from_ints({0, -1, 2}, {3});
  require_error<ValueError>([&] { ops::embedding(negative, table); },
                            {"embedding", "id -1", "(1,)", "V = 11"});
}

TEST_CASE("embedding rejects bad dtypes and shapes naming the op and the shapes",
          "[ops][errors]") {
  Tensor table = random_tensor({11, 4}, 270);
  Tensor ids = Tensor::from_ints({1, 2, 3, 4, 5, 6}, {2, 3});
  require_error<DTypeError>([&] { ops::embedding(random_tensor({2, 3}, 271), table); },
                            {"embedding", "ids", "f64(2, 3)", "i32"});
  require_error<DTypeError>([&] { ops::embedding(ids, ids); }, {"embedding", "table", "i32(2, 3)"});
  require_error<ShapeError>([&] { ops::embedding(ids, random_tensor({44}, 272)); },
                            {"embedding", "table", "(44,)", "rank 2"});
  Tensor strided_table = random_tensor({4, 11}, 273).transpose_view(0, 1);  // (11, 4), strided
  require_error<ShapeError>([&] { ops::embedding(ids, strided_table); },
                            {"embedding", "table", "(11, 4)", "contiguous"});
  Tensor strided_ids = ids.transpose_view(0, 1);  // (3, 2), strided
  require_error<ShapeError>([&] { ops::embedding(strided_ids, table); },
                            {"embedding", "ids", "(3, 2)", "contiguous"});
}
