// The autograd engine: accumulation, reuse, no-grad, release, gradcheck itself.
#include <map>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/elementwise.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tests/helpers.h"

using namespace sinklab;

TEST_CASE("a tensor used twice accumulates both contributions", "[autograd]") {
  Tensor x = Tensor::from_doubles({1, 2, 3}, {3}, DType::F64).set_requires_grad(true);
  Tensor y = ops::sum(ops::mul(x, x));  // d/dx sum(x^2) = 2x
  autograd::backward(y);
  REQUIRE(x.grad().to_doubles() == std::vector<double>{2, 4, 6});
  // A second forward/backward adds into the existing grad (the documented contract).
  Tensor z = ops::sum(ops::add(x, x));  // d/dx = 2
  autograd::backward(z);
  REQUIRE(x.grad().to_doubles() == std::vector<double>{4, 6, 8});
}

TEST_CASE("diamond graph: a shared intermediate gets the sum of both paths", "[autograd]") {
  Tensor x = Tensor::from_doubles({0.5, -1.5}, {2}, DType::F64).set_requires_grad(true);
  Tensor h = ops::scale(x, 3.0);               // h = 3x
  Tensor y = ops::sum(ops::add(ops::mul(h, h), h));  // y = sum(9x^2 + 3x)
  autograd::backward(y);
  REQUIRE(x.grad().to_doubles() == std::vector<double>{18 * 0.5 + 3, 18 * -1.5 + 3});
}

TEST_CASE("no-grad builds no graph; requires_grad propagates", "[autograd]") {
  Tensor x = Tensor::from_doubles({1, 2}, {2}, DType::F64).set_requires_grad(true);
  Tensor c = Tensor::from_doubles({3, 4}, {2}, DType::F64);
  Tensor y = ops::mul(x, c);
  REQUIRE(y.requires_grad());
  REQUIRE(y.grad_fn() != nullptr);
  REQUIRE(y.grad_fn()->name() == "mul");
  Tensor w = ops::mul(c, c);
  REQUIRE_FALSE(w.requires_grad());
  REQUIRE(w.grad_fn() == nullptr);
  {
    autograd::NoGradGuard guard;
    REQUIRE_FALSE(autograd::grad_enabled());
    Tensor z = ops::mul(x, c);
    REQUIRE_FALSE(z.requires_grad());
    REQUIRE(z.grad_fn() == nullptr);
  }
  REQUIRE(autograd::grad_enabled());
}

TEST_CASE("backward needs a scalar, and a graph runs backward once", "[autograd]") {
  Tensor x = Tensor::from_doubles({1, 2}, {2}, DType::F64).set_requires_grad(true);
  Tensor y = ops::scale(x, 2.0);
  REQUIRE_THROWS_AS(autograd::backward(y), ShapeError);
  Tensor s = ops::sum(y);
  autograd::backward(s);
  REQUIRE_THROWS_AS(autograd::backward(s), ValueError);
  Tensor c = Tensor::from_doubles({1}, {1}, DType::F64);
  REQUIRE_THROWS_AS(autograd::backward(c), ValueError);
}

TEST_CASE("gradcheck catches a wrong backward", "[autograd]") {
  // A deliberately wrong op: forward 2x, backward claims 3.
  auto wrong = [](const std::vector<Tensor>& in) {
    std::vector<double> doubled = in[0].to_doubles();
    for (double& e : doubled) e *= 2;
    Tensor out = Tensor::from_doubles(doubled, in[0].shape(), DType::F64);
    autograd::record(out, "wrong", {in[0]}, [](const Tensor& g) {
      Tensor gx = g.copy_contiguous();
      gx.fill(3.0);
      return std::vector<Tensor>{gx};
    });
    return out;
  };
  Tensor x = test::random_tensor({4}, 1, DType::F64, 1.0, true);
  autograd::GradCheckResult r = autograd::gradcheck(wrong, {x});
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.report.find("analytic") != std::string::npos);
  // And passes a correct one.
  Tensor y = test::random_tensor({4}, 2, DType::F64, 1.0, true);
  test::require_gradients([](const std::vector<Tensor>& in) { return ops::scale(in[0], 2.0); },
                          {y});
}

TEST_CASE("the leaf-ready hook fires once per leaf, after its last use, with the final grad",
          "[autograd]") {
  Tensor a = Tensor::from_doubles({1, 2}, {2}, DType::F64).set_requires_grad(true);
  Tensor b = Tensor::from_doubles({3, 4}, {2}, DType::F64).set_requires_grad(true);
  Tensor c = Tensor::from_doubles({5, 6}, {2}, DType::F64).set_requires_grad(true);
  // a is used early (a * b) and late (+ a at the end); c only at the end.
  Tensor early = ops::scale(ops::mul(a, b), 2.0);
  Tensor y = ops::sum(ops::add(ops::add(early, a), c));
  std::vector<std::pair<std::string, std::vector<double>>> fired;
  autograd::set_leaf_ready_hook([&](const Tensor& leaf) {
    const std::string name = leaf.impl_ptr() == a.impl_ptr()   ? "a"
                             : leaf.impl_ptr() == b.impl_ptr() ? "b"
                                                               : "c";
    fired.emplace_back(name, leaf.grad().to_doubles());
  });
  autograd::backward(y);
  autograd::set_leaf_ready_hook({});
  REQUIRE(fired.size() == 3);
  std::map<std::string, std::vector<double>> at_fire(fired.begin(), fired.end());
  REQUIRE(at_fire.size() == 3);  // each leaf exactly once
  // Every grad was already final when its hook ran.
  REQUIRE(at_fire["a"] == a.grad().to_doubles());
  REQUIRE(at_fire["a"] == std::vector<double>{2 * 3 + 1, 2 * 4 + 1});
  REQUIRE(at_fire["b"] == std::vector<double>{2, 4});
  REQUIRE(at_fire["c"] == std::vector<double>{1, 1});
  REQUIRE(fired.front().first == "c");  // c's only use is processed first (the last op)
  // No hook: nothing is called.
  Tensor z = ops::sum(ops::mul(a, a));
  autograd::backward(z);
  REQUIRE(fired.size() == 3);
}

TEST_CASE("linear adds its weight gradient into the weight's gradient buffer in place, "
          "and into the buffer backward finds", "[autograd]") {
  const Tensor x = test::random_tensor({5, 3}, 41, DType::F64);  // (5, 3)
  Tensor w = test::random_tensor({4, 3}, 42, DType::F64).set_requires_grad(true);  // (4, 3)
  // The reference: a leaf without a buffer gets autograd's new tensor.
  autograd::backward(ops::sum(ops::linear(x, w)));
  const std::vector<double> once = w.grad().to_doubles();
  // A flat buffer's view (as parameters have): two graphs, two backwards, the sum in place.
  Tensor buffer = Tensor::zeros({4, 3}, DType::F64, Device::cpu());  // (4, 3)
  w.set_grad(buffer);
  const Tensor y1 = ops::sum(ops::linear(x, w)), y2 = ops::sum(ops::linear(x, w));
  autograd::backward(y1);
  autograd::backward(y2);
  REQUIRE(w.grad().raw_data() == buffer.raw_data());
  const std::vector<double> twice = buffer.to_doubles();
  for (size_t i = 0; i < once.size(); ++i) REQUIRE(twice[i] == Approx(2 * once[i]));
  // The gradient replaced between forward and backward: the new one receives it, the old stays.
  buffer.fill(0.0);
  const Tensor y3 = ops::sum(ops::linear(x, w));
  Tensor replacement = Tensor::zeros({4, 3}, DType::F64, Device::cpu());  // (4, 3)
  w.set_grad(replacement);
  autograd::backward(y3);
  REQUIRE(buffer.to_doubles() == std::vector<double>(12, 0.0));
  const std::vector<double> moved = replacement.to_doubles();
  for (size_t i = 0; i < once.size(); ++i) REQUIRE(moved[i] == Approx(once[i]));
}

TEST_CASE("a backward reads the gradient pending at its input and may take it: the engine then "
          "stores the backward's gradient instead of adding", "[autograd]") {
  // s feeds two consumers: u = s * 3 (processed first: it was recorded later) and a layernorm.
  const Tensor x = test::random_tensor({4, 6}, 51, DType::F64).set_requires_grad(true);
  const Tensor w = test::random_tensor({6}, 52, DType::F64);
  const Tensor b = test::random_tensor({6}, 53, DType::F64);
  std::vector<double> grads[2];
  for (bool fold : {false, true}) {
    const bool before = ops::fold_residual_grads;
    ops::fold_residual_grads = fold;
    Tensor xi = x.detach().set_requires_grad(true);
    const Tensor s = ops::scale(xi, 2.0);
    const Tensor y = ops::layernorm(s, w, b, 1e-5);
    const Tensor u = ops::scale(s, 3.0);
    const int64_t folded_before = ops::residual_grads_folded();
    autograd::backward(ops::add(ops::sum(ops::mul(y, y)), ops::sum(ops::mul(u, u))));
    REQUIRE(ops::residual_grads_folded() - folded_before == (fold ? 1 : 0));
    ops::fold_residual_grads = before;
    grads[fold] = xi.grad().to_doubles();
  }
  REQUIRE(grads[1] == grads[0]);
  // The engine's side, with a probe op that takes what is pending at its input and adds it.
  Tensor xi = x.detach().set_requires_grad(true);
  const Tensor s = ops::scale(xi, 2.0);  // (4, 6)
  Tensor probe = ops::scale(s, 1.0).detach();
  Tensor seen;
  autograd::record(probe, "probe", {s}, [&seen](const Tensor& g) {
    seen = autograd::pending_grad(0);  // u's gradient at s, processed first
    autograd::take_pending_grad(0);
    return std::vector<Tensor>{seen.defined() ? ops::add(g, seen) : g};
  });
  const Tensor u = ops::scale(s, 3.0);
  autograd::backward(ops::add(ops::sum(probe), ops::sum(ops::mul(u, u))));
  REQUIRE(seen.defined());
  const std::vector<double> xv = x.to_doubles(), pending = seen.to_doubles(),
                            got = xi.grad().to_doubles();
  for (size_t i = 0; i < xv.size(); ++i) {
    REQUIRE(pending[i] == Approx(3.0 * 2.0 * (3.0 * 2.0 * xv[i])));  // d(u^2)/ds = 2u * 3
    REQUIRE(got[i] == Approx(2.0 * (1.0 + pending[i])));  // taken once: not counted twice
  }
  // Outside a backward there is nothing pending.
  REQUIRE_FALSE(autograd::pending_grad(0).defined());
  autograd::take_pending_grad(0);  // a no-op
}
