// Causal attention (softmax and sigmoid, with isolated positions) and its probes: forward against
// a naive fp64 evaluation, backward by gradient check, the saved log-sum-exp, the materialised
// probabilities and the key-mass probe, and bad input by error.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "tests/helpers.h"

using namespace sinklab;
using sinklab::test::contains;
using test::random_tensor;
using test::require_close;
using test::require_gradients;

namespace {

// Everything a naive evaluation gives, as plain row-major arrays.
struct NaiveAttention {
  std::vector<double> out;    // (B, T, NH, HS)
  std::vector<double> lse;    // (B, NH, T) (softmax only)
  std::vector<double> probs;  // (B, NH, T, T)
};

// Explicit loops over b, h, t, j: scores, the causal + isolate mask, softmax or sigmoid, then
// the weighted sum of values. No op from the library is used.
NaiveAttention naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                               bool sigmoid, const std::vector<int64_t>& isolate) {
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2), HS = q.size(3);
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(HS));
  const std::vector<double> Q = q.to_doubles(), K = k.to_doubles(), Vv = v.to_doubles();
  auto idx = [&](int64_t b, int64_t t, int64_t h, int64_t i) {
    return ((b * T + t) * NH + h) * HS + i;
  };
  NaiveAttention r;
  r.out.assign(B * T * NH * HS, 0.0);
  r.lse.assign(B * NH * T, 0.0);
  r.probs.assign(B * NH * T * T, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const bool isolated = std::find(isolate.begin(), isolate.end(), t) != isolate.end();
        std::vector<double> score(T, 0.0);
        std::vector<bool> allowed(T, false);
        for (int64_t j = 0; j < T; ++j) {
          allowed[j] = j <= t && (!isolated || j == t);
          if (!allowed[j]) continue;
          double s = 0;
          for (int64_t i = 0; i < HS; ++i) s += Q[idx(b, t, h, i)] * K[idx(b, j, h, i)];
          score[j] = s * scale;
        }
        std::vector<double> p(T, 0.0);
        if (sigmoid) {
          for (int64_t j = 0; j < T; ++j)
            if (allowed[j]) p[j] = 1.0 / (1.0 + std::exp(-score[j]));
        } else {
          double m = -INFINITY;
          for (int64_t j = 0; j < T; ++j)
            if (allowed[j]) m = std::max(m, score[j]);
          double sum = 0;
          for (int64_t j = 0; j < T; ++j)
            if (allowed[j]) sum += std::exp(score[j] - m);
          for (int64_t j = 0; j < T; ++j)
            if (allowed[j]) p[j] = std::exp(score[j] - m) / sum;
          r.lse[(b * NH + h) * T + t] = m + std::log(sum);
        }
        for (int64_t j = 0; j < T; ++j) r.probs[((b * NH + h) * T + t) * T + j] = p[j];
        for (int64_t i = 0; i < HS; ++i) {
          double acc = 0;
          for (int64_t j = 0; j < T; ++j) acc += p[j] * Vv[idx(b, j, h, i)];
          r.out[idx(b, t, h, i)] = acc;
        }
      }
  return r;
}

// qkv (B, T, 3C) from three (B, T, NH, HS) tensors: q, k, v side by side in each row.
Tensor pack_qkv(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), T = q.size(1), NH = q.size(2);
  Tensor qkv = Tensor::empty({B, T, 3 * q.size(2) * q.size(3)}, q.dtype(), q.device());
  const Tensor* parts[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) ops::qkv_part(qkv, NH, i).copy_from(*parts[i]);
  return qkv;
}

// q, k, v (B, T, NH, HS) from the random streams stream, stream + 1, stream + 2.
std::array<Tensor, 3> random_qkv(const Shape& shape, uint64_t stream) {
  return {random_tensor(shape, stream), random_tensor(shape, stream + 1),
          random_tensor(shape, stream + 2)};
}

ops::AttentionOptions make_options(bool sigmoid, std::vector<int64_t> isolate, double scale = 0) {
  ops::AttentionOptions o;
  o.sigmoid = sigmoid;
  o.isolate_positions = std::move(isolate);
  o.scale = scale;
  return o;
}

}  // namespace

TEST_CASE("attention forward matches a naive fp64 evaluation (softmax, sigmoid, isolate)",
          "[ops]") {
  const int64_t B = 2, T = 7, NH = 3, HS = 5;
  const std::array<Tensor, 3> qkv = random_qkv({B, T, NH, HS}, 101);
  const Tensor &q = qkv[0], &k = qkv[1], &v = qkv[2];
  const std::vector<std::vector<int64_t>> isolates = {{}, {3}, {0, 3, 6}};
  for (bool sigmoid : {false, true})
    for (const auto& isolate : isolates)
      for (double scale : {0.0, 0.37})
        for (DType dtype : {DType::F64, DType::F32}) {
          INFO("sigmoid=" << sigmoid << " isolate=" << isolate.size() << " scale=" << scale
                          << " dtype=" << dtype_name(dtype));
          const Tensor qd = q.to_dtype(dtype), kd = k.to_dtype(dtype), vd = v.to_dtype(dtype);
          // The reference sees the same (rounded) inputs as the op.
          const NaiveAttention ref = naive_attention(qd, kd, vd, scale, sigmoid, isolate);
          const double tol = dtype == DType::F64 ? 1e-12 : 2e-6;
          Tensor lse;
          const Tensor out = ops::attention(qd, kd, vd, make_options(sigmoid, isolate, scale),
                                            &lse);
          REQUIRE(out.shape() == Shape{B, T, NH, HS});
          REQUIRE(out.dtype() == dtype);
          require_close(out, ref.out, tol, tol);
          if (sigmoid) {
            REQUIRE(!lse.defined());
          } else {
            REQUIRE(lse.shape() == Shape{B, NH, T});
            REQUIRE(lse.dtype() == ops::attention_lse_dtype(dtype));
            REQUIRE(!lse.requires_grad());
            require_close(lse, ref.lse, tol, tol);
          }
        }
}

TEST_CASE("sigmoid attention's forward sums each row's weights where asked "
          "(AttentionOptions::row_sums), and nothing else changes",
          "[ops]") {
  const int64_t B = 2, T = 9, NH = 3, HS = 4;
  const std::array<Tensor, 3> thirds = random_qkv({B, T, NH, HS}, 131);
  const Tensor w = random_tensor({B, T, NH, HS}, 134);  // a loss weight: sum(out * w)
  for (DType dtype : {DType::F64, DType::F32})
    for (const std::vector<int64_t>& isolate : {std::vector<int64_t>{}, {0, 4}})
      for (bool packed : {false, true}) {
        INFO(dtype_name(dtype) << " isolate=" << isolate.size() << " packed=" << packed);
        // The same op with and without row_sums: outputs and gradients of the same bits.
        std::vector<Tensor> outs, grads, sums;
        for (bool row_sums : {false, true}) {
          ops::AttentionOptions options = make_options(true, isolate);
          options.row_sums = row_sums;
          Tensor qs = thirds[0].to_dtype(dtype).copy_contiguous().set_requires_grad(true);
          Tensor ks = thirds[1].to_dtype(dtype).copy_contiguous().set_requires_grad(true);
          Tensor vs = thirds[2].to_dtype(dtype).copy_contiguous().set_requires_grad(true);
          Tensor qkv = pack_qkv(qs, ks, vs).detach().set_requires_grad(true);
          Tensor row;
          const Tensor out = packed ? ops::attention_qkv(qkv, NH, options, &row)
                                    : ops::attention(qs, ks, vs, options, &row);
          autograd::backward(ops::sum(ops::mul(out, w.to_dtype(dtype))));
          REQUIRE(row.defined() == row_sums);
          outs.push_back(out);
          grads.push_back(packed ? qkv.grad() : pack_qkv(qs.grad(), ks.grad(), vs.grad()));
          sums.push_back(row);
        }
        require_close(outs[1], outs[0], 0, 0);
        require_close(grads[1], grads[0], 0, 0);
        const Tensor& row = sums[1];
        REQUIRE(row.shape() == Shape{B, NH, T});
        REQUIRE(row.dtype() == ops::attention_lse_dtype(dtype));
        REQUIRE_FALSE(row.requires_grad());
        // r_t = sum_j A[t, j] of the naive evaluation on the same (rounded) inputs.
        const NaiveAttention ref =
            naive_attention(thirds[0].to_dtype(dtype), thirds[1].to_dtype(dtype),
                            thirds[2].to_dtype(dtype), 0.0, true, isolate);
        std::vector<double> expected(B * NH * T, 0.0);  // (B, NH, T)
        for (int64_t r = 0; r < B * NH * T; ++r)
          for (int64_t j = 0; j < T; ++j) expected[r] += ref.probs[r * T + j];
        const double tol = dtype == DType::F64 ? 1e-12 : 2e-6;
        require_close(row, expected, tol, tol);
        // An isolated query sees itself alone: its sum is its own weight, sigmoid(s_tt).
        for (int64_t pos : isolate)
          REQUIRE(row.to_doubles()[pos] ==
                  Approx(ref.probs[pos * T + pos]).epsilon(tol).margin(tol));
      }
  // Softmax ignores row_sums: lse as ever.
  ops::AttentionOptions softmax = make_options(false, {});
  Tensor lse_plain, lse_asked;
  (void)ops::attention(thirds[0], thirds[1], thirds[2], softmax, &lse_plain);
  softmax.row_sums = true;
  (void)ops::attention(thirds[0], thirds[1], thirds[2], softmax, &lse_asked);
  require_close(lse_asked, lse_plain, 0, 0);
}

TEST_CASE("attention forward on a longer sequence and with large scores", "[ops]") {
  // T = 33 crosses any small-block assumption; scale 40 gives scores in the hundreds, where a
  // softmax without max subtraction would overflow.
  const int64_t B = 1, T = 33, NH = 2, HS = 8;
  const Tensor q = random_tensor({B, T, NH, HS}, 111);
  const Tensor k = random_tensor({B, T, NH, HS}, 112);
  const Tensor v = random_tensor({B, T, NH, HS}, 113);
  for (double scale : {0.0, 40.0}) {
    INFO("scale=" << scale);
    const NaiveAttention ref = naive_attention(q, k, v, scale, false, {5});
    Tensor lse;
    const Tensor out = ops::attention(q, k, v, make_options(false, {5}, scale), &lse);
    require_close(out, ref.out, 1e-11, 1e-11);
    require_close(lse, ref.lse, 1e-12, 1e-12);
  }
}

TEST_CASE("attention at position 0 and at an isolated position returns that value vector",
          "[ops]") {
  // Query 0 sees only key 0; an isolated query k sees only key k: out_k = A_kk v_k with A_kk = 1
  // (softmax) or sigmoid(score_kk) (sigmoid).
  const int64_t B = 2, T = 6, NH = 2, HS = 4;
  const Tensor q = random_tensor({B, T, NH, HS}, 121);
  const Tensor k = random_tensor({B, T, NH, HS}, 122);
  const Tensor v = random_tensor({B, T, NH, HS}, 123);
  const std::vector<double> out = ops::attention(q, k, v, make_options(false, {3})).to_doubles();
  const std::vector<double> V = v.to_doubles();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t : {0, 3})
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t i = 0; i < HS; ++i) {
          const int64_t at = ((b * T + t) * NH + h) * HS + i;
          REQUIRE(out[at] == Approx(V[at]).epsilon(1e-14).margin(1e-14));
        }
}

TEST_CASE("attention backward (gradcheck): softmax, sigmoid, isolate positions {3}",
          "[ops][grad]") {
  const Shape shape{2, 5, 2, 3};  // (B, T, NH, HS): small, gradcheck runs 2 forwards per element
  const Tensor q = random_tensor(shape, 131, DType::F64, 1.0, true);
  const Tensor k = random_tensor(shape, 132, DType::F64, 1.0, true);
  const Tensor v = random_tensor(shape, 133, DType::F64, 1.0, true);
  const std::vector<std::vector<int64_t>> isolates = {{}, {3}};
  for (bool sigmoid : {false, true})
    for (const auto& isolate : isolates) {
      INFO("sigmoid=" << sigmoid << " isolate=" << isolate.size());
      const ops::AttentionOptions options = make_options(sigmoid, isolate);
      require_gradients(
          [&](const auto& in) { return ops::attention(in[0], in[1], in[2], options); }, {q, k, v});
    }
  // A non-default scale, and q = k = v (one tensor feeding three inputs).
  const ops::AttentionOptions scaled = make_options(false, {0, 2}, 0.8);
  require_gradients([&](const auto& in) { return ops::attention(in[0], in[1], in[2], scaled); },
                    {q, k, v});
  require_gradients([&](const auto& in) { return ops::attention(in[0], in[0], in[0]); }, {q});
}

TEST_CASE("attention f32 backward agrees with f64 backward", "[ops]") {
  // gradcheck covers f64; this covers the f32 instantiation of the backward kernel.
  const Shape shape{2, 9, 3, 4};
  for (bool sigmoid : {false, true}) {
    INFO("sigmoid=" << sigmoid);
    const ops::AttentionOptions options = make_options(sigmoid, {4});
    std::vector<std::vector<double>> grads[2];
    for (int d = 0; d < 2; ++d) {
      const DType dtype = d == 0 ? DType::F64 : DType::F32;
      Tensor q = random_tensor(shape, 141).to_dtype(dtype).set_requires_grad(true);
      Tensor k = random_tensor(shape, 142).to_dtype(dtype).set_requires_grad(true);
      Tensor v = random_tensor(shape, 143).to_dtype(dtype).set_requires_grad(true);
      const Tensor w = random_tensor(shape, 144).to_dtype(dtype);
      autograd::backward(ops::attention(q, k, v, options), w);
      for (const Tensor& t : {q, k, v}) grads[d].push_back(t.grad().to_doubles());
    }
    for (int i = 0; i < 3; ++i) {
      INFO("input " << i);
      REQUIRE(test::closeness(grads[1][i], grads[0][i], 1e-4, 1e-5) <= 1.0);
    }
  }
}

TEST_CASE("attention_probabilities: rows sum to 1, causal and isolate masks hold", "[ops]") {
  const int64_t B = 2, T = 7, NH = 3, HS = 5;
  const Tensor q = random_tensor({B, T, NH, HS}, 151);
  const Tensor k = random_tensor({B, T, NH, HS}, 152);
  const Tensor v = random_tensor({B, T, NH, HS}, 153);
  for (bool sigmoid : {false, true}) {
    INFO("sigmoid=" << sigmoid);
    const ops::AttentionOptions options = make_options(sigmoid, {3});
    const Tensor probs = ops::attention_probabilities(q, k, options);
    REQUIRE(probs.shape() == Shape{B, NH, T, T});
    require_close(probs, naive_attention(q, k, v, 0.0, sigmoid, {3}).probs, 1e-13, 1e-13);
    const std::vector<double> A = probs.to_doubles();
    for (int64_t bh = 0; bh < B * NH; ++bh)
      for (int64_t t = 0; t < T; ++t) {
        double row_sum = 0;
        for (int64_t j = 0; j < T; ++j) {
          const double a = A[(bh * T + t) * T + j];
          row_sum += a;
          if (j > t || (t == 3 && j < 3)) {
            REQUIRE(a == 0.0);  // causal mask; isolated query 3 sees no key before 3
          } else {
            REQUIRE(a > 0.0);
          }
        }
        if (!sigmoid) REQUIRE(row_sum == Approx(1.0).epsilon(1e-13));
        if (!sigmoid && t == 3) REQUIRE(A[(bh * T + t) * T + 3] == Approx(1.0).epsilon(1e-15));
      }
  }
  // Masked entries stay exactly 0 in f32 too.
  const Tensor p32 = ops::attention_probabilities(q.to_dtype(DType::F32), k.to_dtype(DType::F32));
  REQUIRE(p32.dtype() == DType::F32);
  require_close(p32, naive_attention(q, k, v, 0.0, false, {}).probs, 1e-5, 1e-6);
}

TEST_CASE("attention_key_mass equals a column of attention_probabilities", "[ops]") {
  const int64_t B = 2, T = 7, NH = 3, HS = 5;
  const Tensor q = random_tensor({B, T, NH, HS}, 161);
  const Tensor k = random_tensor({B, T, NH, HS}, 162);
  const Tensor v = random_tensor({B, T, NH, HS}, 163);
  const std::vector<std::vector<int64_t>> isolates = {{}, {3}, {5}};
  for (bool sigmoid : {false, true})
    for (const auto& isolate : isolates)
      for (int64_t key : {0, 3})
        for (DType dtype : {DType::F64, DType::F32}) {
          INFO("sigmoid=" << sigmoid << " isolate=" << (isolate.empty() ? -1 : isolate[0])
                          << " key=" << key << " dtype=" << dtype_name(dtype));
          const ops::AttentionOptions options = make_options(sigmoid, isolate);
          const Tensor qd = q.to_dtype(dtype), kd = k.to_dtype(dtype), vd = v.to_dtype(dtype);
          Tensor lse;
          (void)ops::attention(qd, kd, vd, options, &lse);
          const Tensor mass = ops::attention_key_mass(qd, kd, lse, key, options);
          REQUIRE(mass.shape() == Shape{B, NH, T});
          const std::vector<double> A = ops::attention_probabilities(qd, kd, options).to_doubles();
          std::vector<double> column(B * NH * T);
          for (int64_t bh = 0; bh < B * NH; ++bh)
            for (int64_t t = 0; t < T; ++t) column[bh * T + t] = A[(bh * T + t) * T + key];
          const double tol = dtype == DType::F64 ? 1e-13 : 2e-6;
          require_close(mass, column, tol, tol);
          const std::vector<double> m = mass.to_doubles();
          for (int64_t bh = 0; bh < B * NH; ++bh)
            for (int64_t t = 0; t < key; ++t) REQUIRE(m[bh * T + t] == 0.0);
        }
}

TEST_CASE("attention and its probes reject bad input naming the op and the shapes",
          "[ops][errors]") {
  const Tensor q = random_tensor({2, 7, 3, 5}, 171);
  const Tensor k = random_tensor({2, 7, 3, 5}, 172);
  const Tensor v = random_tensor({2, 7, 3, 5}, 173);

  std::string what = test::caught<ShapeError>(
      [&] { (void)ops::attention(q, random_tensor({2, 6, 3, 5}, 174), v); }).what();
  REQUIRE(contains(what, "attention"));
  REQUIRE(contains(what, "(2, 7, 3, 5)"));
  REQUIRE(contains(what, "(2, 6, 3, 5)"));

  what = test::caught<ShapeError>(
      [&] { (void)ops::attention(q, k, random_tensor({2, 7, 3, 4}, 175)); }).what();
  REQUIRE(contains(what, "attention"));
  REQUIRE(contains(what, "(2, 7, 3, 4)"));

  const Tensor strided = random_tensor({2, 3, 7, 5}, 176).transpose_view(1, 2);  // (2, 7, 3, 5)
  what = test::caught<ShapeError>([&] { (void)ops::attention(strided, k, v); }).what();
  REQUIRE(contains(what, "attention"));
  REQUIRE(contains(what, "(2, 7, 3, 5)"));
  REQUIRE(contains(what, "contiguous"));

  what = test::caught<DTypeError>([&] { (void)ops::attention(q, k.to_dtype(DType::F32), v); }).what();
  REQUIRE(contains(what, "attention"));
  REQUIRE(contains(what, "f64(2, 7, 3, 5)"));
  REQUIRE(contains(what, "f32(2, 7, 3, 5)"));

  what = test::caught<ShapeError>([&] {
    (void)ops::attention(random_tensor({2, 7, 15}, 177), random_tensor({2, 7, 15}, 178),
                         random_tensor({2, 7, 15}, 179));
  }).what();
  REQUIRE(contains(what, "attention"));
  REQUIRE(contains(what, "(2, 7, 15)"));

  for (int64_t bad : {7, 100, -1}) {
    what = test::caught<ValueError>(
        [&] { (void)ops::attention(q, k, v, make_options(false, {2, bad})); }).what();
    INFO(what);
    REQUIRE(contains(what, "attention"));
    REQUIRE(contains(what, "isolate position " + std::to_string(bad)));
    REQUIRE(contains(what, "T = 7"));
  }
  REQUIRE_THROWS_AS(ops::attention(q, k, v, make_options(true, {7})), ValueError);
  REQUIRE_THROWS_AS(ops::attention_probabilities(q, k, make_options(false, {7})), ValueError);
  REQUIRE_THROWS_AS(ops::attention(Tensor::from_ints(std::vector<int32_t>(8, 1), {1, 2, 2, 2}),
                                   Tensor::from_ints(std::vector<int32_t>(8, 1), {1, 2, 2, 2}),
                                   Tensor::from_ints(std::vector<int32_t>(8, 1), {1, 2, 2, 2})),
                    DTypeError);
  REQUIRE_THROWS_AS(ops::attention(q, Tensor(), v), ValueError);

  // attention_key_mass: key range and the lse's shape/dtype.
  Tensor lse;
  (void)ops::attention(q, k, v, {}, &lse);
  what = test::caught<ValueError>([&] { (void)ops::attention_key_mass(q, k, lse, 7); }).what();
  REQUIRE(contains(what, "attention_key_mass"));
  REQUIRE(contains(what, "key 7"));
  REQUIRE(contains(what, "T = 7"));
  REQUIRE_THROWS_AS(ops::attention_key_mass(q, k, lse, -1), ValueError);
  what = test::caught<ShapeError>(
      [&] { (void)ops::attention_key_mass(q, k, random_tensor({2, 3, 6}, 180), 0); }).what();
  REQUIRE(contains(what, "attention_key_mass"));
  REQUIRE(contains(what, "(2, 3, 6)"));
  REQUIRE(contains(what, "(2, 3, 7)"));
  REQUIRE_THROWS_AS(ops::attention_key_mass(q, k, lse.to_dtype(DType::F32), 0), DTypeError);
  REQUIRE_THROWS_AS(ops::attention_key_mass(q, k, Tensor(), 0), ValueError);
  // Sigmoid mode ignores the lse, which may be undefined.
  REQUIRE(ops::attention_key_mass(q, k, Tensor(), 0, make_options(true, {})).shape() ==
          Shape{2, 3, 7});
}

TEST_CASE("attention_qkv equals attention on its thirds: output, lse, packed gradient",
          "[ops]") {
  const int64_t B = 2, T = 7, NH = 3, HS = 4;
  const std::array<Tensor, 3> thirds = random_qkv({B, T, NH, HS}, 171);
  const Tensor &q = thirds[0], &k = thirds[1], &v = thirds[2];
  const Tensor w = random_tensor({B, T, NH, HS}, 174);  // a loss weight: sum(out * w)
  const std::vector<std::vector<int64_t>> isolates = {{}, {4}};
  for (DType dtype : {DType::F64, DType::F32})
    for (bool sigmoid : {false, true})
      for (const auto& isolate : isolates) {
        INFO(dtype_name(dtype) << " sigmoid=" << sigmoid << " isolate=" << isolate.size());
        const ops::AttentionOptions options = make_options(sigmoid, isolate);
        Tensor qs = q.to_dtype(dtype).copy_contiguous().set_requires_grad(true);
        Tensor ks = k.to_dtype(dtype).copy_contiguous().set_requires_grad(true);
        Tensor vs = v.to_dtype(dtype).copy_contiguous().set_requires_grad(true);
        Tensor qkv = pack_qkv(qs, ks, vs).set_requires_grad(true);
        Tensor lse_split, lse_packed;
        const Tensor split = ops::attention(qs, ks, vs, options, &lse_split);
        const Tensor packed = ops::attention_qkv(qkv, NH, options, &lse_packed);
        require_close(packed, split, 0, 0);
        if (!sigmoid) require_close(lse_packed, lse_split, 0, 0);
        const Tensor wd = w.to_dtype(dtype);
        autograd::backward(ops::sum(ops::mul(split, wd)));
        autograd::backward(ops::sum(ops::mul(packed, wd)));
        require_close(qkv.grad(), pack_qkv(qs.grad(), ks.grad(), vs.grad()), 0, 0);
        // The parts as views: what the probes read.
        require_close(ops::qkv_part(qkv, NH, 1).copy_contiguous(), ks, 0, 0);
      }
}

TEST_CASE("attention_qkv backward (gradcheck) and the probes on qkv_part views", "[ops][grad]") {
  const int64_t NH = 2;
  const Tensor qkv = random_tensor({2, 5, 3 * NH * 3}, 181, DType::F64, 1.0, true);
  for (bool sigmoid : {false, true}) {
    const ops::AttentionOptions options = make_options(sigmoid, {3});
    require_gradients([&](const auto& in) { return ops::attention_qkv(in[0], NH, options); },
                      {qkv});
  }
  // attention_key_mass and attention_probabilities read views with rows 3C apart as they read
  // contiguous copies.
  Tensor lse;
  const Tensor plain = qkv.detach();
  ops::attention_qkv(plain, NH, {}, &lse);
  const Tensor q = ops::qkv_part(plain, NH, 0), k = ops::qkv_part(plain, NH, 1);
  REQUIRE_FALSE(q.is_contiguous());
  require_close(ops::attention_key_mass(q, k, lse, 0),
                ops::attention_key_mass(q.copy_contiguous(), k.copy_contiguous(), lse, 0), 0, 0);
  require_close(ops::attention_probabilities(q, k),
                ops::attention_probabilities(q.copy_contiguous(), k.copy_contiguous()), 0, 0);
  // Bad input names the argument.
  const auto error =
      test::caught<ShapeError>([&] { ops::attention_qkv(random_tensor({2, 5, 10}, 182), NH); });
  REQUIRE(contains(error.what(), "qkv"));
  test::caught<ShapeError>(
      [&] { ops::attention_qkv(Tensor::empty({2, 5, 0}, DType::F64, Device::cpu()), NH); });
}
