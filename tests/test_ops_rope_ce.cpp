// Rotary position embedding and softmax cross-entropy: forward against a naive fp64 evaluation,
// backward by gradient check, invariants (rope: position 0 fixed, pair norms kept; cross-entropy:
// uniform logits give log V, ignored targets), and bad input by error. rope_qkv against rope on
// the q and k parts of the packed qkv (bit for bit), forward and backward.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/rope.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using sinklab::test::contains;
using test::random_tensor;
using test::require_close;
using test::require_gradients;

namespace {

// Explicit loops: out[b, t, h, i] per the rotate_half formula with angle (t + offset) * freq_i.
std::vector<double> naive_rope(const Tensor& x, double theta, int64_t offset) {
  const int64_t B = x.size(0), T = x.size(1), NH = x.size(2), HS = x.size(3), half = HS / 2;
  const std::vector<double> X = x.to_doubles();
  std::vector<double> out(X.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double freq = std::pow(theta, -2.0 * i / HS);
          const double angle = (t + offset) * freq;
          const int64_t base = ((b * T + t) * NH + h) * HS;
          const double x1 = X[base + i], x2 = X[base + i + half];
          out[base + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
          out[base + i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
  return out;
}

// Explicit loops: mean over counted rows of -log(softmax(row)[target]).
double naive_cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                           int32_t ignore_index) {
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  const std::vector<double> X = logits.to_doubles();
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r) {
    if (targets[r] == ignore_index) continue;
    double m = -INFINITY;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, X[r * V + v]);
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(X[r * V + v] - m);
    total += -(X[r * V + targets[r]] - m - std::log(sum));
    ++count;
  }
  return count ? total / count : 0.0;
}

// Random class indices in [0, V) with every `every`-th one replaced by ignore_index.
std::vector<int32_t> random_targets(int64_t n, int32_t V, uint64_t stream, int every,
                                    int32_t ignore_index) {
  const std::vector<double> draws = rand_ints({n}, RngKey{20261129, stream, 0}, V).to_doubles();
  std::vector<int32_t> targets(n);
  for (int64_t i = 0; i < n; ++i)
    targets[i] = every > 0 && i % every == 1 ? ignore_index : static_cast<int32_t>(draws[i]);
  return targets;
}

}  // namespace

TEST_CASE("rope forward matches the rotate_half formula", "[ops]") {
  const Tensor x = random_tensor({2, 5, 3, 6}, 201);  // (B, T, NH, HS), HS = 6
  for (double theta : {10000.0, 500.0})
    for (int64_t offset : {0, 7})
      for (DType dtype : {DType::F64, DType::F32}) {
        INFO("theta=" << theta << " offset=" << offset << " dtype=" << dtype_name(dtype));
        const Tensor xd = x.to_dtype(dtype);
        const Tensor out = ops::rope(xd, theta, offset);
        REQUIRE(out.shape() == x.shape());
        REQUIRE(out.dtype() == dtype);
        const double tol = dtype == DType::F64 ? 1e-13 : 1e-6;
        require_close(out, naive_rope(xd, theta, offset), tol, tol);
      }
  // A longer sequence with HS = 8 (angles up to a few hundred radians).
  const Tensor y = random_tensor({1, 300, 2, 8}, 202);
  require_close(ops::rope(y), naive_rope(y, 10000.0, 0), 1e-11, 1e-11);
}

TEST_CASE("rope at offset 0 leaves position 0 unchanged and preserves each pair's norm",
          "[ops]") {
  const int64_t B = 2, T = 5, NH = 3, HS = 6, half = HS / 2;
  const Tensor x = random_tensor({B, T, NH, HS}, 211);
  const std::vector<double> X = x.to_doubles();
  for (int64_t offset : {0, 11}) {
    const std::vector<double> out = ops::rope(x, 10000.0, offset).to_doubles();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < NH; ++h) {
          const int64_t base = ((b * T + t) * NH + h) * HS;
          for (int64_t i = 0; i < half; ++i) {
            const double before = std::hypot(X[base + i], X[base + i + half]);
            const double after = std::hypot(out[base + i], out[base + i + half]);
            REQUIRE(after == Approx(before).epsilon(1e-13));
          }
          if (t == 0 && offset == 0)
            for (int64_t i = 0; i < HS; ++i) REQUIRE(out[base + i] == X[base + i]);
        }
  }
}

TEST_CASE("rope backward (gradcheck)", "[ops][grad]") {
  const Tensor x = random_tensor({2, 4, 2, 6}, 221, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::rope(in[0]); }, {x});
  require_gradients([](const auto& in) { return ops::rope(in[0], 100.0, 5); }, {x});
}

TEST_CASE("rope rejects bad input naming the op and the shapes", "[ops][errors]") {
  std::string what =
      test::caught<ShapeError>([] { (void)ops::rope(random_tensor({2, 5, 3, 5}, 231)); }).what();
  REQUIRE(contains(what, "rope"));
  REQUIRE(contains(what, "(2, 5, 3, 5)"));
  REQUIRE(contains(what, "odd"));
  what = test::caught<ShapeError>([] { (void)ops::rope(random_tensor({5, 3, 6}, 232)); }).what();
  REQUIRE(contains(what, "rope"));
  REQUIRE(contains(what, "(5, 3, 6)"));
  REQUIRE_THROWS_AS(ops::rope(random_tensor({2, 3, 5, 6}, 233).transpose_view(1, 2)),
                    ShapeError);
  REQUIRE_THROWS_AS(ops::rope(random_tensor({1, 2, 1, 4}, 234), 0.0), ValueError);
  REQUIRE_THROWS_AS(ops::rope(Tensor::from_ints({1, 2, 3, 4}, {1, 1, 1, 4})), DTypeError);
}

namespace {
// Part 0 (q), 1 (k) or 2 (v) of a packed (B, T, 3C) as its own contiguous (B, T, NH, HS) tensor.
Tensor part_of(const Tensor& qkv, int64_t n_head, int part) {
  return ops::qkv_part(qkv.detach(), n_head, part).copy_contiguous();
}
}  // namespace

TEST_CASE("rope_qkv equals rope on the q and k parts and copies v, bit for bit", "[ops][grad]") {
  const int64_t B = 2, T = 5, NH = 3, HS = 6, C = NH * HS;
  for (double theta : {10000.0, 500.0})
    for (int64_t offset : {0, 7})
      for (DType dtype : {DType::F64, DType::F32}) {
        INFO("theta=" << theta << " offset=" << offset << " dtype=" << dtype_name(dtype));
        Tensor qkv = random_tensor({B, T, 3 * C}, 205, dtype, 1.0, true);  // (B, T, 3C)
        const Tensor grad = random_tensor({B, T, 3 * C}, 206, dtype);      // (B, T, 3C)
        const Tensor out = ops::rope_qkv(qkv, NH, theta, offset);          // (B, T, 3C)
        REQUIRE(out.shape() == qkv.shape());
        REQUIRE(out.dtype() == dtype);
        autograd::backward(out, grad);
        for (int part = 0; part < 3; ++part) {
          INFO("part " << part);
          Tensor x = part_of(qkv, NH, part);  // (B, T, NH, HS)
          x.set_requires_grad(true);
          const Tensor g = part_of(grad, NH, part);                           // (B, T, NH, HS)
          const Tensor expected = part < 2 ? ops::rope(x, theta, offset) : x;  // (B, T, NH, HS)
          REQUIRE(part_of(out, NH, part).to_doubles() == expected.to_doubles());
          const std::vector<double> expected_grad = [&] {
            if (part == 2) return g.to_doubles();  // v passes through
            autograd::backward(expected, g);
            return x.grad().to_doubles();
          }();
          REQUIRE(part_of(qkv.grad(), NH, part).to_doubles() == expected_grad);
        }
      }
}

TEST_CASE("rope_qkv moved in rotates in place: the copy's bits, forward and backward",
          "[ops][grad]") {
  const int64_t B = 2, T = 5, NH = 3, HS = 6, C = NH * HS;
  for (DType dtype : {DType::F64, DType::F32}) {
    INFO("dtype=" << dtype_name(dtype));
    const Tensor grad = random_tensor({B, T, 3 * C}, 216, dtype);  // (B, T, 3C)
    // The leaf's gradient through scale -> rope_qkv -> scale, and rope_qkv's output.
    const auto run = [&](bool in_place, bool moved) {
      ops::RopeInPlaceGuard guard(in_place);
      Tensor qkv = random_tensor({B, T, 3 * C}, 215, dtype, 1.0, true);  // (B, T, 3C) leaf
      Tensor x = ops::scale(qkv, 1.0);  // (B, T, 3C): a product's output, held here alone
      const void* before = x.raw_data();
      const int64_t rotations = ops::rope_rotations_in_place();
      const Tensor y = moved ? ops::rope_qkv(std::move(x), NH, 500.0, 3)
                             : ops::rope_qkv(x, NH, 500.0, 3);  // (B, T, 3C)
      // over x's storage exactly when asked for and x was given up
      REQUIRE((y.raw_data() == before) == (in_place && moved));
      const std::vector<double> out = y.to_doubles();
      autograd::backward(ops::scale(y, 2.0), grad);
      // backward always (the gradient from scale's backward, held by the engine alone), forward
      // when x was given up
      REQUIRE(ops::rope_rotations_in_place() - rotations == (in_place ? (moved ? 2 : 1) : 0));
      return std::make_pair(out, qkv.grad().to_doubles());
    };
    const auto copied = run(false, true);
    REQUIRE(run(true, true) == copied);
    REQUIRE(run(true, false) == copied);  // x still held by the caller: copied
  }
  // gradcheck of the in-place path (its input a fresh tensor, the gradient a fresh one)
  ops::RopeInPlaceGuard guard(true);
  const Tensor qkv = random_tensor({2, 4, 3 * 2 * 6}, 223, DType::F64, 1.0, true);  // NH 2, HS 6
  require_gradients(
      [](const auto& in) {
        return ops::scale(ops::rope_qkv(ops::scale(in[0], 1.0), 2, 100.0, 5), 1.0);
      },
      {qkv});
}

TEST_CASE("rope_qkv backward (gradcheck)", "[ops][grad]") {
  const Tensor qkv = random_tensor({2, 4, 3 * 2 * 6}, 222, DType::F64, 1.0, true);  // NH 2, HS 6
  require_gradients([](const auto& in) { return ops::rope_qkv(in[0], 2); }, {qkv});
  require_gradients([](const auto& in) { return ops::rope_qkv(in[0], 2, 100.0, 5); }, {qkv});
}

TEST_CASE("rope_qkv rejects bad input naming qkv's shape and n_head", "[ops][errors]") {
  using test::require_error;
  require_error<ShapeError>([] { (void)ops::rope_qkv(random_tensor({2, 5, 3, 6}, 235), 3); },
                            {"rope_qkv", "(2, 5, 3, 6)", "3 heads"});
  // 3C = 18 is not 3 * 4 heads * HS.
  require_error<ShapeError>([] { (void)ops::rope_qkv(random_tensor({2, 5, 18}, 236), 4); },
                            {"rope_qkv", "(2, 5, 18)", "4 heads"});
  require_error<ShapeError>([] { (void)ops::rope_qkv(random_tensor({2, 5, 18}, 237), 0); },
                            {"rope_qkv", "(2, 5, 18)", "0 heads"});
  // 3C = 18 with 2 heads: HS = 3.
  require_error<ShapeError>([] { (void)ops::rope_qkv(random_tensor({2, 5, 18}, 238), 2); },
                            {"rope_qkv", "(2, 5, 18)", "2 heads", "odd head size HS = 3"});
  require_error<ValueError>([] { (void)ops::rope_qkv(random_tensor({1, 2, 12}, 239), 2, 0.0); },
                            {"rope_qkv", "theta"});
  const Tensor strided = random_tensor({12, 2, 1}, 240).transpose_view(0, 2);  // (1, 2, 12)
  require_error<ShapeError>([&] { (void)ops::rope_qkv(strided, 2); },
                            {"rope_qkv", "qkv", "contiguous"});
  const Tensor ints = Tensor::from_ints({1, 2, 3, 4, 5, 6}, {1, 1, 6});
  require_error<DTypeError>([&] { (void)ops::rope_qkv(ints, 1); }, {"rope_qkv", "qkv", "i32"});
  const Tensor bf16 = random_tensor({1, 2, 12}, 241, DType::F32).to_dtype(DType::BF16);
  require_error<DTypeError>([&] { (void)ops::rope_qkv(bf16, 2); }, {"rope_qkv", "qkv", "bf16"});
}

TEST_CASE("cross_entropy forward matches a naive fp64 evaluation", "[ops]") {
  const int64_t B = 3, T = 5, V = 11;
  const Tensor logits = random_tensor({B, T, V}, 241, DType::F64, 2.0);
  for (int32_t ignore_index : {-1, 4})
    for (int every : {0, 3})
      for (DType dtype : {DType::F64, DType::F32}) {
        INFO("ignore_index=" << ignore_index << " every=" << every << " dtype="
                             << dtype_name(dtype));
        const std::vector<int32_t> t = random_targets(B * T, V, 242, every, ignore_index);
        const Tensor ld = logits.to_dtype(dtype);
        const Tensor loss = ops::cross_entropy(ld, Tensor::from_ints(t, {B, T}), ignore_index);
        REQUIRE(loss.shape().empty());
        REQUIRE(loss.dtype() == dtype);
        const double expected = naive_cross_entropy(ld, t, ignore_index);
        const double tol = dtype == DType::F64 ? 1e-13 : 1e-6;
        REQUIRE(loss.item() == Approx(expected).epsilon(tol));
      }
  // One row: logits (V) with a scalar target.
  const Tensor row = random_tensor({V}, 243);
  REQUIRE(ops::cross_entropy(row, Tensor::from_ints({7}, {})).item() ==
          Approx(naive_cross_entropy(row, {7}, -1)).epsilon(1e-13));
}

TEST_CASE("cross_entropy of uniform logits is log(V), and large logits stay finite", "[ops]") {
  const int64_t N = 6, V = 50;
  const std::vector<int32_t> t = random_targets(N, V, 251, 0, -1);
  for (double c : {0.0, 3.7, -250.0})
    for (DType dtype : {DType::F64, DType::F32}) {
      const Tensor logits = Tensor::full({N, V}, c, dtype);
      REQUIRE(ops::cross_entropy(logits, Tensor::from_ints(t, {N})).item() ==
              Approx(std::log(static_cast<double>(V))).epsilon(1e-6));
    }
  // Logits around 1e4: exp overflows without max subtraction.
  const Tensor big = random_tensor({N, V}, 252, DType::F64, 1e4);
  const double loss = ops::cross_entropy(big, Tensor::from_ints(t, {N})).item();
  REQUIRE(std::isfinite(loss));
  REQUIRE(loss == Approx(naive_cross_entropy(big, t, -1)).epsilon(1e-12));
}

TEST_CASE("cross_entropy backward (gradcheck) with ignored targets", "[ops][grad]") {
  const int64_t B = 2, T = 4, V = 7;
  const Tensor logits = random_tensor({B, T, V}, 261, DType::F64, 1.5, true);
  for (int32_t ignore_index : {-1, 2}) {
    INFO("ignore_index=" << ignore_index);
    const Tensor targets =
        Tensor::from_ints(random_targets(B * T, V, 262, 3, ignore_index), {B, T});
    require_gradients(
        [&](const auto& in) { return ops::cross_entropy(in[0], targets, ignore_index); },
        {logits});
  }
}

TEST_CASE("cross_entropy gradient: softmax - onehot over the count, zero on ignored rows",
          "[ops]") {
  const int64_t N = 5, V = 4;
  for (DType dtype : {DType::F64, DType::F32}) {
    Tensor logits = random_tensor({N, V}, 271).to_dtype(dtype).set_requires_grad(true);
    const std::vector<int32_t> t = {1, -1, 3, 0, -1};  // 3 counted rows
    const double g = 0.5;
    autograd::backward(ops::cross_entropy(logits, Tensor::from_ints(t, {N})),
                       Tensor::full({}, g, dtype));
    const std::vector<double> X = logits.to_doubles(), G = logits.grad().to_doubles();
    for (int64_t r = 0; r < N; ++r) {
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(X[r * V + v]);
      for (int64_t v = 0; v < V; ++v) {
        const double expected =
            t[r] < 0 ? 0.0 : (std::exp(X[r * V + v]) / sum - (v == t[r])) * g / 3.0;
        REQUIRE(G[r * V + v] == Approx(expected).epsilon(1e-5).margin(1e-7));
      }
    }
  }
}

TEST_CASE("cross_entropy with every target ignored gives loss 0 and a zero gradient", "[ops]") {
  Tensor logits = random_tensor({2, 3, 5}, 281, DType::F64, 1.0, true);
  const Tensor targets = Tensor::from_ints({-1, -1, -1, -1, -1, -1}, {2, 3});
  const Tensor loss = ops::cross_entropy(logits, targets);
  REQUIRE(loss.item() == 0.0);
  autograd::backward(loss);
  for (double g : logits.grad().to_doubles()) REQUIRE(g == 0.0);
}

TEST_CASE("cross_entropy rejects bad input naming the op, the shapes and the bad target",
          "[ops][errors]") {
  const Tensor logits = random_tensor({2, 3, 5}, 291);
  std::string what = test::caught<ValueError>([&] {
    (void)ops::cross_entropy(logits, Tensor::from_ints({0, 1, 2, 3, 9, 4}, {2, 3}));
  }).what();
  INFO(what);
  REQUIRE(contains(what, "cross_entropy"));
  REQUIRE(contains(what, "target 9"));
  REQUIRE(contains(what, "row 4"));
  REQUIRE(contains(what, "V = 5"));
  // -1 is only allowed when it is the ignore_index.
  what = test::caught<ValueError>([&] {
    (void)ops::cross_entropy(logits, Tensor::from_ints({0, -1, 2, 3, 1, 4}, {2, 3}), 7);
  }).what();
  REQUIRE(contains(what, "target -1"));
  REQUIRE(contains(what, "row 1"));

  what = test::caught<ShapeError>(
      [&] { (void)ops::cross_entropy(logits, Tensor::from_ints({0, 1, 2}, {3})); }).what();
  REQUIRE(contains(what, "cross_entropy"));
  REQUIRE(contains(what, "(2, 3, 5)"));
  REQUIRE(contains(what, "(3,)"));
  REQUIRE(contains(what, "(2, 3)"));

  what = test::caught<DTypeError>(
      [&] { (void)ops::cross_entropy(logits, random_tensor({2, 3}, 292)); }).what();
  REQUIRE(contains(what, "cross_entropy"));
  REQUIRE(contains(what, "targets"));
  REQUIRE_THROWS_AS(
      ops::cross_entropy(Tensor::from_ints({1, 2}, {1, 2}), Tensor::from_ints({0}, {1})),
      DTypeError);
  const Tensor strided = logits.transpose_view(0, 1);  // (3, 2, 5) non-contiguous
  REQUIRE_THROWS_AS(ops::cross_entropy(strided, Tensor::from_ints({0, 1, 2, 3, 4, 0}, {3, 2})),
                    ShapeError);
}

TEST_CASE("cross_entropy with its gradient written by the forward: the same values, times g",
          "[ops][grad]") {
  const int64_t N = 6, V = 9;
  const std::vector<int32_t> t = {1, -1, 8, 0, -1, 4};  // 4 counted rows
  const Tensor targets = Tensor::from_ints(t, {N});
  for (DType dtype : {DType::F64, DType::F32}) {
    for (double g : {1.0, 0.5}) {
      INFO((dtype == DType::F64 ? "f64" : "f32") << " g=" << g);
      Tensor fused = random_tensor({N, V}, 281).to_dtype(dtype).set_requires_grad(true);
      Tensor plain = random_tensor({N, V}, 281).to_dtype(dtype).set_requires_grad(true);
      Tensor fused_loss, plain_loss;
      {
        ops::FusedCrossEntropyGuard on(true);
        fused_loss = ops::cross_entropy(fused, targets);
      }
      plain_loss = ops::cross_entropy(plain, targets);
      REQUIRE(fused_loss.to_doubles() == plain_loss.to_doubles());
      autograd::backward(fused_loss, Tensor::full({}, g, dtype));
      autograd::backward(plain_loss, Tensor::full({}, g, dtype));
      if (g == 1.0) {
        REQUIRE(fused.grad().to_doubles() == plain.grad().to_doubles());  // the same values
      } else {  // (softmax - onehot) / count rounded, then times g: one more rounding
        const double eps = dtype == DType::F64 ? 1e-15 : 1e-7;
        require_close(fused.grad(), plain.grad(), 2 * eps, eps);
      }
    }
  }
  // The fp64 gradient check through the fused path (seeds other than 1 scale it).
  ops::FusedCrossEntropyGuard on(true);
  require_gradients([&](const auto& in) { return ops::cross_entropy(in[0], targets); },
                    {random_tensor({N, V}, 282, DType::F64, 1.5, true)});
  // No gradient needed (under NoGradGuard): the loss as without fusing, and no graph.
  const Tensor logits = random_tensor({N, V}, 283, DType::F64, 1.0, true);
  Tensor fused_loss;
  {
    autograd::NoGradGuard no_grad;
    fused_loss = ops::cross_entropy(logits, targets);
  }
  REQUIRE_FALSE(fused_loss.requires_grad());
  ops::FusedCrossEntropyGuard off(false);
  REQUIRE(fused_loss.to_doubles() == ops::cross_entropy(logits, targets).to_doubles());
}

TEST_CASE("cross_entropy writes its gradient over an op's logits only when told to, with the "
          "same loss and gradient bits", "[ops][grad]") {
  const int64_t N = 5, V = 7;
  const Tensor targets = Tensor::from_ints({3, -1, 0, 6, 2}, {N});  // (N) 4 counted rows
  for (DType dtype : {DType::F64, DType::F32})
    for (double g : {1.0, 0.5}) {
      INFO((dtype == DType::F64 ? "f64" : "f32") << " g=" << g);
      const Tensor values = random_tensor({N, V}, 301, DType::F64, 2.0).to_dtype(dtype);
      std::vector<double> losses[2], grads[2];
      for (auto after : {ops::CrossEntropyLogits::kKept, ops::CrossEntropyLogits::kOverwritten}) {
        const bool over = after == ops::CrossEntropyLogits::kOverwritten;
        Tensor x = values.detach();
        x.set_requires_grad(true);
        const Tensor logits = ops::scale(x, 1.0);  // (N, V): an op's output, not a leaf
        const Tensor loss = ops::cross_entropy(logits, targets, -1, after);
        // Overwritten: the logits now hold (softmax - onehot) / count, x's gradient for g = 1.
        const std::vector<double> after_values = logits.detach().to_doubles();
        REQUIRE((after_values == values.to_doubles()) == !over);
        autograd::backward(loss, Tensor::full({}, g, dtype));
        losses[over] = loss.to_doubles();
        grads[over] = x.grad().to_doubles();
        if (over && g == 1.0) REQUIRE(after_values == grads[over]);
      }
      REQUIRE(losses[1] == losses[0]);
      REQUIRE(grads[1] == grads[0]);
    }
  // Never over a leaf (a caller's own tensor), nor where no gradient is written in the forward:
  // the fused path off, or no gradient needed.
  const Tensor values = random_tensor({N, V}, 302, DType::F64);
  Tensor leaf = values.detach();
  leaf.set_requires_grad(true);
  (void)ops::cross_entropy(leaf, targets, -1, ops::CrossEntropyLogits::kOverwritten);
  REQUIRE(leaf.to_doubles() == values.to_doubles());
  for (bool fused : {false, true}) {
    ops::FusedCrossEntropyGuard guard(fused);
    Tensor x = values.detach();
    x.set_requires_grad(true);
    const Tensor logits = ops::scale(x, 1.0);  // (N, V)
    std::optional<autograd::NoGradGuard> no_grad;
    if (fused) no_grad.emplace();
    (void)ops::cross_entropy(logits, targets, -1, ops::CrossEntropyLogits::kOverwritten);
    REQUIRE(logits.detach().to_doubles() == values.to_doubles());
  }
}

TEST_CASE("cross_entropy keeps the logits for its backward only when it computes the gradient "
          "there", "[ops][grad]") {
  const int64_t N = 4, V = 6;
  const Tensor targets = Tensor::from_ints({0, 5, -1, 2}, {N});
  std::vector<std::vector<double>> grads;
  for (bool keep_inputs : {true, false}) {
    for (bool fused : {true, false}) {
      INFO("fused " << fused << ", nodes keep their inputs " << keep_inputs);
      ops::FusedCrossEntropyGuard guard(fused);
      autograd::KeepInputsGuard keep(keep_inputs);
      Tensor x = random_tensor({N, V}, 291, DType::F64, 1.0, true);
      Tensor logits = ops::scale(x, 2.0);  // (N, V): storage of its own; scale keeps no input
      const std::weak_ptr<Storage> storage = logits.storage();
      const Tensor loss = ops::cross_entropy(logits, targets);
      logits = Tensor();  // the caller's handle gone: only the loss's node may hold them now
      // Freed only where neither the node's input nor the backward closure needs them.
      REQUIRE(storage.expired() == (fused && !keep_inputs));
      autograd::backward(loss);
      grads.push_back(x.grad().to_doubles());
    }
  }
  for (const std::vector<double>& g : grads) REQUIRE(g == grads[0]);  // the same gradient
}
