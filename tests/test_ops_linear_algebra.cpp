// add/mul/scale (broadcasting), sum/mean, shape ops, matmul and linear: forward against a naive
// fp64 evaluation, backward by gradient check, bad input by error.
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;
using test::require_gradients;

namespace {
// Naive C[b, m, n] = sum_k A[b, m, k] B[b or 0, k, n] on plain (row-major) arrays.
std::vector<double> naive_matmul(const std::vector<double>& A, const std::vector<double>& B,
                                 int64_t batch, int64_t M, int64_t K, int64_t N, bool b_shared) {
  std::vector<double> C(batch * M * N, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += A[(b * M + m) * K + k] * B[((b_shared ? 0 : b) * K + k) * N + n];
        C[(b * M + m) * N + n] = acc;
      }
  return C;
}

// Row-major values of the last-two-dims transpose of a (batch, R, C) array.
std::vector<double> transpose_last(const std::vector<double>& v, int64_t batch, int64_t R,
                                   int64_t C) {
  std::vector<double> out(v.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) out[(b * C + c) * R + r] = v[(b * R + r) * C + c];
  return out;
}
}  // namespace

TEST_CASE("add/mul/scale forward with broadcasting over leading dims", "[ops]") {
  Tensor a = random_tensor({3, 5, 7}, 1);
  Tensor b = random_tensor({7}, 2);
  Tensor full_b = random_tensor({3, 5, 7}, 3);
  std::vector<double> av = a.to_doubles(), bv = b.to_doubles(), fv = full_b.to_doubles();
  std::vector<double> sum(av.size()), prod(av.size()), same(av.size()), scaled(av.size());
  for (size_t i = 0; i < av.size(); ++i) {
    sum[i] = av[i] + bv[i % 7];
    prod[i] = av[i] * bv[i % 7];
    same[i] = av[i] * fv[i];
    scaled[i] = -1.5 * av[i];
  }
  require_close(ops::add(a, b), sum);
  require_close(ops::mul(a, b), prod);
  require_close(ops::mul(a, full_b), same);
  require_close(ops::scale(a, -1.5), scaled);
  // f32 path too.
  require_close(ops::add(a.to_dtype(DType::F32), b.to_dtype(DType::F32)), sum, 1e-6, 1e-6);
}

TEST_CASE("add/mul/scale backward (gradcheck)", "[ops][grad]") {
  Tensor a = random_tensor({2, 3, 5}, 4, DType::F64, 1.0, true);
  Tensor b = random_tensor({5}, 5, DType::F64, 1.0, true);
  Tensor c = random_tensor({3, 5}, 6, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::add(in[0], in[1]); }, {a, b});
  require_gradients([](const auto& in) { return ops::mul(in[0], in[1]); }, {a, b});
  require_gradients([](const auto& in) { return ops::mul(in[0], in[1]); }, {a, c});
  require_gradients([](const auto& in) { return ops::mul(in[0], in[0]); }, {a});
  require_gradients([](const auto& in) { return ops::scale(in[0], 0.3); }, {a});
}

TEST_CASE("elementwise ops reject bad input naming op and shapes", "[ops][errors]") {
  Tensor a = random_tensor({3, 4}, 7);
  try {
    (void)ops::add(a, random_tensor({3}, 8));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    std::string what = e.what();
    REQUIRE(what.find("add") != std::string::npos);
    REQUIRE(what.find("(3,)") != std::string::npos);
    REQUIRE(what.find("(3, 4)") != std::string::npos);
  }
  REQUIRE_THROWS_AS(ops::mul(a, random_tensor({3, 4}, 9, DType::F32)), DTypeError);
  REQUIRE_THROWS_AS(ops::add(a.transpose_view(0, 1), random_tensor({3}, 9)), ShapeError);
  REQUIRE_THROWS_AS(ops::add(a, Tensor()), ValueError);
  Tensor ints = Tensor::from_ints({1, 2}, {2});
  REQUIRE_THROWS_AS(ops::scale(ints, 2.0), DTypeError);
}

TEST_CASE("sum and mean forward and backward", "[ops][grad]") {
  Tensor x = random_tensor({4, 9}, 10, DType::F64, 1.0, true);
  double total = 0;
  for (double v : x.to_doubles()) total += v;
  REQUIRE(ops::sum(x).item() == Approx(total).epsilon(1e-12));
  REQUIRE(ops::mean(x).item() == Approx(total / 36).epsilon(1e-12));
  REQUIRE(ops::sum(x).shape().empty());
  require_gradients([](const auto& in) { return ops::sum(in[0]); }, {x});
  require_gradients([](const auto& in) { return ops::mean(in[0]); }, {x});
  REQUIRE_THROWS_AS(ops::mean(Tensor::zeros({0})), ShapeError);
}

TEST_CASE("shape ops: reshape, transpose, narrow, contiguous, to_dtype with gradients",
          "[ops][grad]") {
  Tensor x = random_tensor({3, 4, 5}, 11, DType::F64, 1.0, true);
  Tensor w = random_tensor({5, 4, 3}, 12);  // weights so each element's gradient differs
  require_gradients([&](const auto& in) { return ops::reshape(in[0], {12, 5}); }, {x});
  require_gradients([&](const auto& in) {
    return ops::mul(ops::contiguous(ops::transpose(in[0], 0, 2)), w);
  }, {x});
  require_gradients([&](const auto& in) {
    return ops::contiguous(ops::narrow(in[0], 1, 1, 2));
  }, {x});
  require_gradients([&](const auto& in) {
    return ops::reshape(ops::transpose(in[0], 1, 2), {-1});  // reshape copies a strided input
  }, {x});
  Tensor n = ops::contiguous(ops::narrow(x, 2, 3, 2));
  std::vector<double> xv = x.to_doubles(), expected;
  for (int i = 0; i < 12; ++i) {
    expected.push_back(xv[i * 5 + 3]);
    expected.push_back(xv[i * 5 + 4]);
  }
  require_close(n, expected);
  Tensor f = ops::to_dtype(x, DType::F32);
  REQUIRE(f.dtype() == DType::F32);
  REQUIRE(f.requires_grad());
}

TEST_CASE("matmul forward matches a naive product, all transposes, batched and shared",
          "[ops]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true}) {
        const int64_t batch = 3, M = 5, K = 7, N = 6;
        Shape a_shape = ta ? Shape{batch, K, M} : Shape{batch, M, K};
        Shape b_core = tb ? Shape{N, K} : Shape{K, N};
        Shape b_shape = shared ? b_core : Shape{batch, b_core[0], b_core[1]};
        Tensor a = random_tensor(a_shape, 20 + ta);
        Tensor b = random_tensor(b_shape, 22 + tb);
        std::vector<double> A = ta ? transpose_last(a.to_doubles(), batch, K, M) : a.to_doubles();
        std::vector<double> B =
            tb ? transpose_last(b.to_doubles(), shared ? 1 : batch, N, K) : b.to_doubles();
        INFO("ta=" << ta << " tb=" << tb << " shared=" << shared);
        require_close(ops::matmul(a, b, ta, tb), naive_matmul(A, B, batch, M, K, N, shared),
                      1e-12, 1e-12);
      }
}

TEST_CASE("matmul is right on sizes that cross the CPU kernel's blocks", "[ops]") {
  const int64_t M = 37, K = 300, N = 530;  // > row, depth and column block sizes, odd remainders
  Tensor a = random_tensor({M, K}, 30, DType::F32);
  Tensor b = random_tensor({K, N}, 31, DType::F32);
  require_close(ops::matmul(a, b), naive_matmul(a.to_doubles(), b.to_doubles(), 1, M, K, N, true),
                1e-4, 1e-4);
}

TEST_CASE("matmul and linear backward (gradcheck)", "[ops][grad]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true}) {
        Shape a_shape = ta ? Shape{2, 4, 3} : Shape{2, 3, 4};
        Shape b_core = tb ? Shape{5, 4} : Shape{4, 5};
        Shape b_shape = shared ? b_core : Shape{2, b_core[0], b_core[1]};
        Tensor a = random_tensor(a_shape, 40, DType::F64, 1.0, true);
        Tensor b = random_tensor(b_shape, 41, DType::F64, 1.0, true);
        INFO("ta=" << ta << " tb=" << tb << " shared=" << shared);
        require_gradients([&](const auto& in) { return ops::matmul(in[0], in[1], ta, tb); },
                          {a, b});
      }
  Tensor x = random_tensor({2, 3, 5}, 42, DType::F64, 1.0, true);
  Tensor w = random_tensor({7, 5}, 43, DType::F64, 1.0, true);
  Tensor bias = random_tensor({7}, 44, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::linear(in[0], in[1], in[2]); },
                    {x, w, bias});
  require_gradients([](const auto& in) { return ops::linear(in[0], in[1]); }, {x, w});
}

TEST_CASE("linear forward equals x @ w^T + b", "[ops]") {
  Tensor x = random_tensor({2, 3, 5}, 45);
  Tensor w = random_tensor({4, 5}, 46);
  Tensor b = random_tensor({4}, 47);
  std::vector<double> W = transpose_last(w.to_doubles(), 1, 4, 5);
  std::vector<double> expected = naive_matmul(x.to_doubles(), W, 1, 6, 5, 4, true);
  std::vector<double> bv = b.to_doubles();
  for (size_t i = 0; i < expected.size(); ++i) expected[i] += bv[i % 4];
  Tensor y = ops::linear(x, w, b);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  require_close(y, expected, 1e-12, 1e-12);
}

TEST_CASE("matmul and linear reject mismatched shapes naming them", "[ops][errors]") {
  Tensor a = random_tensor({3, 4}, 50);
  try {
    (void)ops::matmul(a, random_tensor({5, 6}, 51));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    std::string what = e.what();
    REQUIRE(what.find("matmul") != std::string::npos);
    REQUIRE(what.find("(3, 4)") != std::string::npos);
    REQUIRE(what.find("(5, 6)") != std::string::npos);
  }
  REQUIRE_THROWS_AS(ops::matmul(random_tensor({2, 3, 4}, 52), random_tensor({3, 4, 5}, 53)),
                    ShapeError);
  REQUIRE_THROWS_AS(ops::linear(a, random_tensor({6, 5}, 54)), ShapeError);
  REQUIRE_THROWS_AS(ops::linear(a, random_tensor({6, 4}, 55), random_tensor({5}, 56)),
                    ShapeError);
  REQUIRE_THROWS_AS(ops::matmul(a.transpose_view(0, 1), random_tensor({3, 2}, 57)), ShapeError);
}
