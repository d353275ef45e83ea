// layernorm, rmsnorm and headwise_rmsnorm: forward against a naive fp64 evaluation (f64 and f32),
// backward by gradient check (every input, both gamma layouts) and f32 against f64, zero rows,
// the unit mean square of head-wise RMSNorm, and bad input by error.
#include <cmath>
#include <utility>
#include <vector>

#include "core/precision.h"
#include "ops/elementwise.h"
#include "ops/layernorm.h"
#include "ops/rmsnorm.h"
#include "ops/shape_ops.h"
#include "ops/statistics.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;
using test::require_error;
using test::require_gradients;

namespace {

// Per row of C values: (x - mean) / sqrt(var + eps) * w + b (b empty: no bias).
std::vector<double> naive_layernorm(const std::vector<double>& x, const std::vector<double>& w,
                                    const std::vector<double>& b, int64_t C, double eps) {
  std::vector<double> y(x.size());
  for (size_t row = 0; row * C < x.size(); ++row) {
    const double* xr = &x[row * C];
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xr[c];
    mean /= C;
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    var /= C;
    for (int64_t c = 0; c < C; ++c)
      y[row * C + c] = (xr[c] - mean) / std::sqrt(var + eps) * w[c] + (b.empty() ? 0.0 : b[c]);
  }
  return y;
}

// Per row of C values: x / sqrt(mean(x^2) + eps) * w (w empty: no gain).
std::vector<double> naive_rmsnorm(const std::vector<double>& x, const std::vector<double>& w,
                                  int64_t C, double eps) {
  std::vector<double> y(x.size());
  for (size_t row = 0; row * C < x.size(); ++row) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[row * C + c] * x[row * C + c];
    ms /= C;
    for (int64_t c = 0; c < C; ++c)
      y[row * C + c] = x[row * C + c] / std::sqrt(ms + eps) * (w.empty() ? 1.0 : w[c]);
  }
  return y;
}

// x (outer, NH, HS); gamma[h][i] per head (NH * HS values) or gamma[i] shared (HS values).
std::vector<double> naive_headwise(const std::vector<double>& x, const std::vector<double>& gamma,
                                   int64_t NH, int64_t HS, double eps) {
  const bool per_head = static_cast<int64_t>(gamma.size()) == NH * HS;
  const int64_t outer = static_cast<int64_t>(x.size()) / (NH * HS);
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t base = (o * NH + h) * HS;
      double ms = 0;
      for (int64_t i = 0; i < HS; ++i) ms += x[base + i] * x[base + i];
      ms /= HS;
      for (int64_t i = 0; i < HS; ++i)
        y[base + i] = x[base + i] / std::sqrt(ms + eps) * gamma[per_head ? h * HS + i : i];
    }
  return y;
}

std::vector<double> values_of(const Tensor& t) {
  return t.defined() ? t.to_doubles() : std::vector<double>{};
}

// Tolerances for comparing a kernel in `dtype` with the fp64 evaluation of the same inputs.
double tol_for(DType dtype) { return dtype == DType::F64 ? 1e-12 : 2e-6; }

// x with row r filled with zeros (x contiguous, rows of its last dim).
Tensor with_zero_row(Tensor x, int64_t row) {
  const int64_t D = x.size(-1);
  double* p = x.data<double>();  // (rows, D)
  for (int64_t d = 0; d < D; ++d) p[row * D + d] = 0.0;
  return x;
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_doubles())
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("layernorm forward matches a naive fp64 evaluation", "[ops]") {
  struct Case {
    Shape shape;
    bool bias;
    double offset;  // added to x: a large mean must not spoil the variance
  };
  for (DType dtype : {DType::F64, DType::F32})
    for (const Case& c : {Case{{2, 3, 7}, true, 0.0}, Case{{5, 1}, true, 0.0},
                          Case{{4, 16}, false, 0.0}, Case{{3, 9}, true, 50.0}}) {
      const int64_t C = c.shape.back();
      std::vector<double> xv = random_tensor(c.shape, 100, DType::F64, 2.0).to_doubles();
      for (double& v : xv) v += c.offset;
      Tensor x = Tensor::from_doubles(xv, c.shape, dtype);
      Tensor w = random_tensor({C}, 101, dtype);
      Tensor b = c.bias ? random_tensor({C}, 102, dtype) : Tensor();
      INFO(x.str() << " bias=" << c.bias << " offset=" << c.offset);
      Tensor y = ops::layernorm(x, w, b);
      REQUIRE(y.shape() == c.shape);
      REQUIRE(y.dtype() == dtype);
      const double tol = tol_for(dtype) * (1 + c.offset);
      require_close(y, naive_layernorm(x.to_doubles(), w.to_doubles(), values_of(b), C, 1e-5),
                    tol, tol);
    }
  // A non-default eps reaches the kernel.
  Tensor x = random_tensor({2, 5}, 103, DType::F64, 0.01);
  Tensor w = random_tensor({5}, 104);
  require_close(ops::layernorm(x, w, Tensor(), 0.5),
                naive_layernorm(x.to_doubles(), w.to_doubles(), {}, 5, 0.5), 1e-12, 1e-12);
}

TEST_CASE("layernorm backward (gradcheck) for x, weight and bias", "[ops][grad]") {
  Tensor x = random_tensor({2, 3, 5}, 110, DType::F64, 1.0, true);
  Tensor w = random_tensor({5}, 111, DType::F64, 1.0, true);
  Tensor b = random_tensor({5}, 112, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::layernorm(in[0], in[1], in[2]); },
                    {x, w, b});
  require_gradients([](const auto& in) { return ops::layernorm(in[0], in[1], Tensor()); }, {x, w});
  // Only some inputs requiring grad.
  Tensor w_fixed = random_tensor({5}, 113);
  require_gradients([&](const auto& in) { return ops::layernorm(in[0], w_fixed, Tensor()); },
                    {x});
  Tensor x_fixed = random_tensor({4, 5}, 114);
  require_gradients([&](const auto& in) { return ops::layernorm(x_fixed, in[0], in[1]); }, {w, b});
  // f32 backward agrees with f64.
  Tensor xl = random_tensor({6, 7}, 115);
  Tensor wl = random_tensor({7}, 116), bl = random_tensor({7}, 117);
  test::require_f32_gradients_match(
      [](const auto& in) { return ops::layernorm(in[0], in[1], in[2]); }, {xl, wl, bl},
      {true, true, true}, random_tensor({6, 7}, 118));
}

TEST_CASE("rmsnorm forward matches a naive fp64 evaluation", "[ops]") {
  struct Case {
    Shape shape;
    bool weight;
  };
  for (DType dtype : {DType::F64, DType::F32})
    for (const Case& c : {Case{{2, 3, 7}, true}, Case{{3, 16}, false}, Case{{1, 1}, true},
                          Case{{7}, true}}) {
      const int64_t C = c.shape.back();
      Tensor x = random_tensor(c.shape, 120, dtype, 3.0);
      Tensor w = c.weight ? random_tensor({C}, 121, dtype) : Tensor();
      INFO(x.str() << " weight=" << c.weight);
      Tensor y = ops::rmsnorm(x, w);
      REQUIRE(y.shape() == c.shape);
      require_close(y, naive_rmsnorm(x.to_doubles(), values_of(w), C, 1e-6), tol_for(dtype),
                    tol_for(dtype));
    }
  Tensor x = random_tensor({2, 5}, 122, DType::F64, 0.01);
  require_close(ops::rmsnorm(x, Tensor(), 0.25), naive_rmsnorm(x.to_doubles(), {}, 5, 0.25),
                1e-12, 1e-12);
}

TEST_CASE("rmsnorm backward (gradcheck) with and without weight", "[ops][grad]") {
  Tensor x = random_tensor({2, 3, 5}, 130, DType::F64, 1.0, true);
  Tensor w = random_tensor({5}, 131, DType::F64, 1.0, true);
  require_gradients([](const auto& in) { return ops::rmsnorm(in[0], in[1]); }, {x, w});
  require_gradients([](const auto& in) { return ops::rmsnorm(in[0], Tensor()); }, {x});
  Tensor x_fixed = random_tensor({4, 5}, 132);
  require_gradients([&](const auto& in) { return ops::rmsnorm(x_fixed, in[0]); }, {w});
  Tensor xl = random_tensor({6, 7}, 133), wl = random_tensor({7}, 134);
  test::require_f32_gradients_match([](const auto& in) { return ops::rmsnorm(in[0], in[1]); },
                                    {xl, wl}, {true, true}, random_tensor({6, 7}, 135));
}

TEST_CASE("headwise_rmsnorm forward matches a naive fp64 evaluation, both gamma layouts",
          "[ops]") {
  for (DType dtype : {DType::F64, DType::F32})
    for (const Shape& shape : {Shape{2, 4, 3, 5}, Shape{3, 2, 7}, Shape{1, 1}, Shape{5, 3, 8}})
      for (bool per_head : {true, false}) {
        const int64_t NH = shape[shape.size() - 2], HS = shape.back();
        Tensor x = random_tensor(shape, 140, dtype, 2.0);
        Tensor gamma = random_tensor(per_head ? Shape{NH, HS} : Shape{HS}, 141, dtype);
        INFO(x.str() << " gamma " << gamma.str());
        Tensor y = ops::headwise_rmsnorm(x, gamma);
        REQUIRE(y.shape() == shape);
        require_close(y, naive_headwise(x.to_doubles(), gamma.to_doubles(), NH, HS, 1e-6),
                      tol_for(dtype), tol_for(dtype));
      }
}

TEST_CASE("headwise_rmsnorm's row statistics of x and y are row_statistics of each head's rows",
          "[ops]") {
  // The sink metrics read them instead of x and y (ops::NormRowStatistics); on the CPU they are
  // row_statistics itself, bit for bit, and asking for them changes no bit of y.
  for (DType dtype : {DType::F64, DType::F32}) {
    const Tensor x = random_tensor({2, 5, 3, 8}, 142, dtype, 2.0);  // (B, T, NH, HS)
    const Tensor gamma = random_tensor({3, 8}, 143, dtype);
    ops::NormRowStatistics stats;
    const Tensor y = ops::headwise_rmsnorm(x, gamma, 1e-6, ops::NormOutput::kInputDType, &stats);
    REQUIRE(y.to_doubles() == ops::headwise_rmsnorm(x, gamma).to_doubles());
    REQUIRE(stats.input.shape() == Shape({30, ops::kRowStats}));
    REQUIRE(stats.input.to_doubles() == ops::row_statistics(x.reshape_view({30, 8})).to_doubles());
    REQUIRE(stats.output.to_doubles() == ops::row_statistics(y.reshape_view({30, 8})).to_doubles());
  }
}

TEST_CASE("headwise_rmsnorm backward (gradcheck), per-head and shared gamma", "[ops][grad]") {
  Tensor x = random_tensor({2, 2, 3, 5}, 150, DType::F64, 1.0, true);
  Tensor per_head = random_tensor({3, 5}, 151, DType::F64, 1.0, true);
  Tensor shared = random_tensor({5}, 152, DType::F64, 1.0, true);
  auto f = [](const auto& in) { return ops::headwise_rmsnorm(in[0], in[1]); };
  require_gradients(f, {x, per_head});
  require_gradients(f, {x, shared});
  Tensor x_fixed = random_tensor({3, 3, 5}, 153);
  require_gradients([&](const auto& in) { return ops::headwise_rmsnorm(x_fixed, in[0]); },
                    {per_head});
  Tensor xl = random_tensor({2, 4, 3, 5}, 154);
  for (const Shape& gshape : {Shape{3, 5}, Shape{5}}) {
    INFO("gamma " << shape_str(gshape));
    test::require_f32_gradients_match(f, {xl, random_tensor(gshape, 155)}, {true, true},
                                      random_tensor({2, 4, 3, 5}, 156));
  }
}

TEST_CASE("headwise_rmsnorm with unit gamma gives mean square ~1 per (row, head)", "[ops]") {
  const int64_t B = 2, T = 8, NH = 3, HS = 5;
  // Heads at very different scales (like position 0 vs the rest): all come out at unit RMS.
  std::vector<double> xv = random_tensor({B, T, NH, HS}, 160).to_doubles();
  for (size_t i = 0; i < xv.size(); ++i)  // head scales 0.5, 5, 50
    xv[i] *= 0.5 * std::pow(10.0, static_cast<double>(i / HS % 3));
  Tensor x = Tensor::from_doubles(xv, {B, T, NH, HS}, DType::F64);
  Tensor ones = Tensor::full({NH, HS}, 1.0, DType::F64);
  std::vector<double> y = ops::headwise_rmsnorm(x, ones).to_doubles();
  for (int64_t row = 0; row < B * T * NH; ++row) {
    double ms = 0;
    for (int64_t i = 0; i < HS; ++i) ms += y[row * HS + i] * y[row * HS + i];
    INFO("(row, head) " << row);
    REQUIRE(ms / HS == Approx(1.0).epsilon(1e-3));
  }
}

TEST_CASE("norms of an all-zero row are zero, not NaN, with finite gradients", "[ops]") {
  Tensor x = with_zero_row(random_tensor({3, 4, 5}, 170), 4);  // row 4 of 12 is zeros
  Tensor w = random_tensor({5}, 171);
  Tensor gamma = random_tensor({4, 5}, 172);
  const std::vector<std::function<Tensor(const Tensor&)>> ops_under_test = {
      [&](const Tensor& t) { return ops::layernorm(t, w, w); },
      [&](const Tensor& t) { return ops::rmsnorm(t, w); },
      [&](const Tensor& t) { return ops::rmsnorm(t, Tensor()); },
      [&](const Tensor& t) { return ops::headwise_rmsnorm(t, gamma); },
  };
  for (size_t k = 0; k < ops_under_test.size(); ++k) {
    INFO("op #" << k);
    Tensor xg = x.copy_contiguous();
    xg.set_requires_grad(true);
    Tensor y = ops_under_test[k](xg);
    REQUIRE(all_finite(y));
    std::vector<double> yv = y.to_doubles(), wv = w.to_doubles();
    for (int64_t d = 0; d < 5; ++d)  // the zero row maps to the bias (layernorm) or to zero
      REQUIRE(yv[4 * 5 + d] == (k == 0 ? wv[d] : 0.0));
    autograd::backward(y, random_tensor({3, 4, 5}, 173));
    REQUIRE(all_finite(xg.grad()));
  }
}

TEST_CASE("add_layernorm and add_rmsnorm equal add then the norm, forward and backward",
          "[ops][grad]") {
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor x = random_tensor({3, 5, 7}, 300, dt), d = random_tensor({3, 5, 7}, 301, dt);
    Tensor w = random_tensor({7}, 302, dt), b = random_tensor({7}, 303, dt);
    INFO(dtype_name(dt));
    const Tensor s = ops::add(x, d);
    const ops::AddNorm ln = ops::add_layernorm(x, d, w, b, 1e-5);
    REQUIRE(ln.sum.to_doubles() == s.to_doubles());  // bit for bit
    REQUIRE(ln.normed.to_doubles() == ops::layernorm(s, w, b, 1e-5).to_doubles());
    const ops::AddNorm rms = ops::add_rmsnorm(x, d, w, 1e-6);
    REQUIRE(rms.sum.to_doubles() == s.to_doubles());
    REQUIRE(rms.normed.to_doubles() == ops::rmsnorm(s, w, 1e-6).to_doubles());
  }
  // Both outputs feed the loss: the sum's gradient and the norm's reach x and delta.
  Tensor x = random_tensor({4, 6}, 304, DType::F64, 1.0, true);
  Tensor d = random_tensor({4, 6}, 305, DType::F64, 1.0, true);
  Tensor w = random_tensor({6}, 306, DType::F64, 1.0, true);
  Tensor b = random_tensor({6}, 307, DType::F64, 1.0, true);
  Tensor c = random_tensor({4, 6}, 308, DType::F64);
  require_gradients(
      [&](const auto& in) {
        const ops::AddNorm r = ops::add_layernorm(in[0], in[1], in[2], in[3], 1e-5);
        return ops::add(ops::mul(r.sum, c), r.normed);
      },
      {x, d, w, b});
  require_gradients(
      [&](const auto& in) {
        const ops::AddNorm r = ops::add_rmsnorm(in[0], in[1], in[2], 1e-6);
        return ops::add(ops::mul(r.sum, c), r.normed);
      },
      {x, d, w});
  require_error<ShapeError>(
      [&] { (void)ops::add_layernorm(x.detach(), random_tensor({4, 5}, 309), w.detach(), b.detach()); },
      {"add_layernorm", "delta", "(4, 5)", "(4, 6)"});
}

TEST_CASE("norm outputs for kOperandDType keep x's dtype on the CPU, also under bf16 precision",
          "[ops]") {
  // NormOutput::kOperandDType stores bf16 only on a GPU (ops/add_norm.h): on the CPU every norm
  // gives x's dtype and the kInputDType values bit for bit, the residual sum too.
  PrecisionGuard bf16(Precision::BF16);
  const ops::NormOutput operand = ops::NormOutput::kOperandDType;
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    // x (3, 5, 8): rows of C = 8, or NH = 5 heads of HS = 8 for headwise_rmsnorm.
    Tensor x = random_tensor({3, 5, 8}, 310, dt), d = random_tensor({3, 5, 8}, 311, dt);
    Tensor w = random_tensor({8}, 312, dt), b = random_tensor({8}, 313, dt);
    Tensor per_head = random_tensor({5, 8}, 314, dt);  // (NH, HS)
    const ops::AddNorm ln = ops::add_layernorm(x, d, w, b, 1e-5, operand);
    const ops::AddNorm rms = ops::add_rmsnorm(x, d, w, 1e-6, operand);
    REQUIRE(ln.sum.dtype() == dt);
    REQUIRE(rms.sum.dtype() == dt);
    // {the kOperandDType output, its kInputDType reference}
    const std::vector<std::pair<Tensor, Tensor>> outputs = {
        {ops::layernorm(x, w, b, 1e-5, operand), ops::layernorm(x, w, b, 1e-5)},
        {ln.normed, ops::add_layernorm(x, d, w, b, 1e-5).normed},
        {ops::rmsnorm(x, w, 1e-6, operand), ops::rmsnorm(x, w, 1e-6)},
        {ops::rmsnorm(x, Tensor(), 1e-6, operand), ops::rmsnorm(x, Tensor(), 1e-6)},
        {rms.normed, ops::add_rmsnorm(x, d, w, 1e-6).normed},
        {ops::headwise_rmsnorm(x, per_head, 1e-6, operand),
         ops::headwise_rmsnorm(x, per_head, 1e-6)},
        {ops::headwise_rmsnorm(x, w, 1e-6, operand), ops::headwise_rmsnorm(x, w, 1e-6)}};
    for (size_t i = 0; i < outputs.size(); ++i) {
      INFO("output " << i);
      REQUIRE(outputs[i].first.dtype() == dt);
      REQUIRE(outputs[i].first.to_doubles() == outputs[i].second.to_doubles());
    }
  }
}

TEST_CASE("norm ops reject bad input naming the op and the shapes", "[ops][errors]") {
  Tensor x = random_tensor({2, 3, 7}, 180);
  Tensor w = random_tensor({7}, 181);
  // Wrong weight/bias shapes.
  require_error<ShapeError>([&] { ops::rmsnorm(x, random_tensor({6}, 182)); },
                            {"rmsnorm", "weight", "(6,)", "(7,)"});
  require_error<ShapeError>([&] { ops::layernorm(x, random_tensor({6}, 183), w); },
                            {"layernorm", "weight", "(6,)", "(7,)"});
  require_error<ShapeError>([&] { ops::layernorm(x, w, random_tensor({7, 1}, 184)); },
                            {"layernorm", "bias", "(7, 1)", "(7,)"});
  // headwise_rmsnorm: gamma neither (NH, HS) nor (HS).
  Tensor xh = random_tensor({2, 4, 3, 5}, 185);
  require_error<ShapeError>([&] { ops::headwise_rmsnorm(xh, random_tensor({4, 5}, 186)); },
                            {"headwise_rmsnorm", "gamma", "(4, 5)", "(2, 4, 3, 5)", "(3, 5)"});
  require_error<ShapeError>([&] { ops::headwise_rmsnorm(xh, random_tensor({3}, 187)); },
                            {"headwise_rmsnorm", "(3,)", "(2, 4, 3, 5)"});
  require_error<ShapeError>([&] { ops::headwise_rmsnorm(random_tensor({5}, 188), w); },
                            {"headwise_rmsnorm", "(5,)", "rank"});
  require_error<ValueError>([&] { ops::headwise_rmsnorm(xh, Tensor()); },
                            {"headwise_rmsnorm", "gamma"});
  // dtype mismatch and non-float input.
  Tensor w32 = random_tensor({7}, 189, DType::F32);
  require_error<DTypeError>([&] { ops::rmsnorm(x, w32); }, {"rmsnorm", "f64(2, 3, 7)", "f32(7,)"});
  require_error<DTypeError>([&] { ops::layernorm(x, w32, Tensor()); },
                            {"layernorm", "f64(2, 3, 7)", "f32(7,)"});
  require_error<DTypeError>(
      [&] { ops::headwise_rmsnorm(xh, random_tensor({3, 5}, 190, DType::F32)); },
      {"headwise_rmsnorm", "f64(2, 4, 3, 5)", "f32(3, 5)"});
  Tensor ints = Tensor::from_ints({1, 2, 3, 4, 5, 6, 7}, {1, 7});
  require_error<DTypeError>([&] { ops::rmsnorm(ints, Tensor()); }, {"rmsnorm", "i32(1, 7)"});
  // The add's delta in another dtype: only a bf16 delta for an f32 x on a GPU is taken.
  Tensor x32 = random_tensor({2, 3, 7}, 196, DType::F32);
  require_error<DTypeError>([&] { ops::add_rmsnorm(x32, x32.to_dtype(DType::BF16), w32, 1e-6); },
                            {"add_rmsnorm", "delta", "bf16(2, 3, 7)", "f32(2, 3, 7)"});
  require_error<DTypeError>([&] { ops::add_layernorm(x, x32, w, w, 1e-5); },
                            {"add_layernorm", "delta", "f32(2, 3, 7)", "f64(2, 3, 7)"});
  // Non-contiguous input.
  Tensor xt = random_tensor({7, 3}, 191).transpose_view(0, 1);  // (3, 7), strided
  require_error<ShapeError>([&] { ops::layernorm(xt, w, w); },
                            {"layernorm", "(3, 7)", "contiguous"});
  require_error<ShapeError>([&] { ops::rmsnorm(xt, w); }, {"rmsnorm", "(3, 7)", "contiguous"});
  Tensor xht = random_tensor({2, 5, 3}, 192).transpose_view(1, 2);  // (2, 3, 5), strided
  require_error<ShapeError>([&] { ops::headwise_rmsnorm(xht, random_tensor({3, 5}, 193)); },
                            {"headwise_rmsnorm", "(2, 3, 5)", "contiguous"});
  Tensor gt = random_tensor({5, 3}, 194).transpose_view(0, 1);  // (3, 5), strided
  require_error<ShapeError>([&] { ops::headwise_rmsnorm(random_tensor({2, 3, 5}, 195), gt); },
                            {"headwise_rmsnorm", "gamma", "contiguous"});
  // eps must be positive.
  require_error<ValueError>([&] { ops::rmsnorm(x, w, 0.0); }, {"rmsnorm", "eps"});
  require_error<ValueError>([&] { ops::layernorm(x, w, w, -1.0); }, {"layernorm", "eps"});
}
