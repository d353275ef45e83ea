// Statistics probes (ops/statistics.h) on the CPU against a naive fp64 evaluation, and their
// input checks.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/statistics.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;

TEST_CASE("row_statistics: mean, variance, norm, mean |x| and max |x| of every row (odd sizes)", "[ops]") {
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor x = random_tensor({3, 5, 37}, 901, dt, 2.0);  // (3, 5, 37): 15 rows of 37
    Tensor stats = ops::row_statistics(x);
    REQUIRE(stats.shape() == Shape{15, 5});
    std::vector<double> v = x.to_doubles(), expected;
    for (int r = 0; r < 15; ++r) {
      double mean = 0, var = 0, norm = 0, mean_abs = 0, max_abs = 0;
      for (int d = 0; d < 37; ++d) mean += v[r * 37 + d] / 37;
      for (int d = 0; d < 37; ++d) {
        var += (v[r * 37 + d] - mean) * (v[r * 37 + d] - mean) / 37;
        norm += v[r * 37 + d] * v[r * 37 + d];
        mean_abs += std::fabs(v[r * 37 + d]) / 37;
        max_abs = std::max(max_abs, std::fabs(v[r * 37 + d]));
      }
      expected.insert(expected.end(), {mean, var, std::sqrt(norm), mean_abs, max_abs});
    }
    const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    require_close(stats, expected, tol, tol);
  }
}

TEST_CASE("abs_order_statistics: exact ranks of |x|, median and maximum", "[ops]") {
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor x = random_tensor({7, 131}, 902, dt);  // (7, 131): 917 elements
    const int64_t n = x.numel();
    std::vector<double> sorted = x.to_doubles();
    for (double& s : sorted) s = std::fabs(s);
    std::sort(sorted.begin(), sorted.end());
    const std::vector<int64_t> ranks = {0, n / 2, n - 3, n - 2, n - 1};
    Tensor got = ops::abs_order_statistics(x, ranks);
    std::vector<double> expected;
    for (int64_t r : ranks) expected.push_back(sorted[r]);
    require_close(got, expected, 0, 0);
  }
}

TEST_CASE("abs_order_statistics: ties, zeros and NaN above +inf", "[ops]") {
  Tensor x = Tensor::from_doubles({-2, 0, 2, NAN, -INFINITY, 1, 0, -1}, {8}, DType::F32);
  Tensor got = ops::abs_order_statistics(x, {0, 1, 2, 3, 4, 5, 6, 7});
  std::vector<double> v = got.to_doubles();
  const std::vector<double> expected = {0, 0, 1, 1, 2, 2, INFINITY};
  for (int i = 0; i < 7; ++i) REQUIRE(v[i] == expected[i]);
  REQUIRE(std::isnan(v[7]));
}

TEST_CASE("statistics probes: bad input names the op and the shape", "[ops][errors]") {
  Tensor x = random_tensor({4, 6}, 903);
  test::require_error<ShapeError>([&] { ops::abs_order_statistics(x, {24}); },
                                  {"abs_order_statistics", "rank 24", "(4, 6)"});
  test::require_error<DTypeError>(
      [&] { ops::row_statistics(Tensor::from_ints({1, 2}, {2})); }, {"row_statistics"});
  // A 2-D view of any strides is read in place; higher ranks must be contiguous.
  test::require_error<ShapeError>(
      [&] { ops::row_statistics(x.reshape_view({2, 2, 6}).transpose_view(0, 2)); },
      {"row_statistics", "contiguous"});
}

TEST_CASE("pooled_variance of the groups' row statistics is the variance of the whole row",
          "[ops]") {
  // Rows of 4 groups of 6 (heads of a position): the law of total variance against row_statistics
  // of the whole rows, for groups with means far apart and near, in f64 and f32.
  for (DType dt : {DType::F64, DType::F32}) {
    std::vector<double> v = random_tensor({3, 7, 4, 6}, 904, DType::F64, 1.5).to_doubles();
    for (size_t i = 0; i < v.size(); ++i) v[i] += static_cast<double>((i / 6) % 4) * 3.0;
    const Tensor x = Tensor::from_doubles(v, {3, 7, 4, 6}, dt);  // (B, T, G, D)
    const Tensor groups = ops::row_statistics(x).reshape_view({3, 7, 4, ops::kRowStats});
    const Tensor pooled = ops::pooled_variance(groups);
    REQUIRE(pooled.shape() == Shape({3, 7}));
    const Tensor whole = ops::row_statistics(x.reshape_view({21, 24}));  // (B T, 5)
    std::vector<double> expected;
    for (int64_t r = 0; r < 21; ++r) expected.push_back(whole.to_doubles()[r * 5 + 1]);
    const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    require_close(pooled.reshape_view({21}), Tensor::from_doubles(expected, {21}, DType::F64), tol,
                  tol);
  }
  test::require_error<ShapeError>([&] { ops::pooled_variance(random_tensor({4, 6}, 905)); },
                                  {"pooled_variance", "(4, 6)", "(..., G, 5)"});
}

TEST_CASE("row_statistics reads 2-D views in place: transposes and selected columns", "[ops]") {
  const Tensor x = random_tensor({5, 7, 3}, 904);
  const Tensor t = x.select_view(2, 1);  // (5, 7), elements 3 apart
  REQUIRE_FALSE(t.is_contiguous());
  require_close(ops::row_statistics(t), ops::row_statistics(t.copy_contiguous()), 0, 0);
  const Tensor tt = t.transpose_view(0, 1);  // (7, 5)
  require_close(ops::row_statistics(tt), ops::row_statistics(tt.copy_contiguous()), 0, 0);
  // select_view drops the dim: element (i, j) of x.select_view(1, 4) is x[i, 4, j].
  const Tensor s = x.select_view(1, 4);
  REQUIRE(s.shape() == Shape{5, 3});
  REQUIRE(s.to_doubles()[3 * 2 + 1] == x.to_doubles()[(2 * 7 + 4) * 3 + 1]);
}
