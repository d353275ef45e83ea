// [cuda] statistics probes (row statistics, exact order statistics of |x|) against the CPU
// reference on random inputs of odd sizes (f32, f64, and bf16 against its f32 values);
// bit-identical across two GPU runs.
#include <cmath>
#include <vector>

#include "ops/statistics.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;

TEST_CASE("cuda: row_statistics matches the CPU (f32, f64, odd sizes)", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    // Rows held in registers as 16-byte vectors (1, 2, 4 and 8 a lane: D = 64, 200, 768,
    // 1024 f32), and element by element (37 elements, rows too long for the registers).
    for (Shape shape : {Shape{3, 5, 37}, Shape{2, 129, 768}, Shape{1, 1}, Shape{9, 64},
                        Shape{5, 200}, Shape{7, 1024}, Shape{3, 1028}, Shape{2, 4096}}) {
      Tensor x = random_tensor(shape, 911, dt, 3.0);
      Tensor cpu = ops::row_statistics(x);
      Tensor gpu = ops::row_statistics(x.to_device(Device::cuda()));
      const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
      require_close(gpu.to_device(Device::cpu()), cpu, tol, tol);
      Tensor again = ops::row_statistics(x.to_device(Device::cuda()));
      REQUIRE(again.to_doubles() == gpu.to_doubles());
    }
}

TEST_CASE("cuda: row_statistics of 2-D views (selected, transposed) matches the CPU in place",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // The sink metrics' per-position and per-channel means read such views without a copy.
  for (DType dt : {DType::F32, DType::BF16}) {
    INFO(dtype_name(dt));
    const Tensor values = random_tensor({6, 33, 40}, 905, DType::F32).to_dtype(dt);
    const Tensor cpu = dt == DType::BF16 ? values.to_dtype(DType::F32) : values;
    const Tensor gpu = values.to_device(Device::cuda());
    for (int which = 0; which < 3; ++which) {
      INFO("view " << which);
      auto view = [&](const Tensor& t) {
        if (which == 0) return t.select_view(1, 0);                     // (6, 40), rows 33*40 apart
        if (which == 1) return t.select_view(1, 0).transpose_view(0, 1);  // (40, 6)
        return t.select_view(2, 3);                                    // (6, 33), 40 apart
      };
      require_close(ops::row_statistics(view(gpu)).to_device(Device::cpu()),
                    ops::row_statistics(view(cpu)), 1e-5, 1e-6);
    }
  }
}

TEST_CASE("cuda: row_statistics of bf16 rows held in registers, and of unaligned views",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // bf16 rows of 8, 64, 768 and 2048 (1 to 8 vectors a lane), then views whose rows start 4
  // bytes past an aligned address or lie a non-multiple of the vector apart (element path).
  for (Shape shape : {Shape{4, 8}, Shape{6, 64}, Shape{3, 768}, Shape{5, 2048}, Shape{2, 2056}}) {
    INFO(shape_str(shape));
    const Tensor bf16 = random_tensor(shape, 916, DType::F32, 4.0).to_dtype(DType::BF16);
    const Tensor values = bf16.to_dtype(DType::F32);  // exact
    require_close(ops::row_statistics(bf16.to_device(Device::cuda())).to_device(Device::cpu()),
                  ops::row_statistics(values), 1e-5, 1e-6);
  }
  // Column windows of a (6, 72) matrix: from column 4 the rows are aligned and 72 apart (the
  // vector path with a row stride); from column 1 they start 4 bytes past (element by element);
  // (6, 70) rows lie 70 apart, not a multiple of the vector (element by element).
  for (int64_t cols : {72, 70})
    for (int64_t start : {1, 4}) {
      INFO(cols << " columns, window from " << start);
      const Tensor x = random_tensor({6, cols}, 917, DType::F32, 2.0);  // (6, cols)
      const Tensor gpu = x.to_device(Device::cuda());
      require_close(ops::row_statistics(gpu.narrow_view(1, start, 64)).to_device(Device::cpu()),
                    ops::row_statistics(x.narrow_view(1, start, 64)), 1e-5, 1e-6);
    }
}

TEST_CASE("cuda: abs_order_statistics is exact (median, top 3, minimum)", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{1} << 20 | 77}) {
      Tensor x = random_tensor({n}, 912, dt, 5.0);  // (n)
      const std::vector<int64_t> ranks = {0, n / 2, std::max<int64_t>(n - 3, 0),
                                          std::max<int64_t>(n - 2, 0), n - 1};
      Tensor cpu = ops::abs_order_statistics(x, ranks);
      Tensor gpu = ops::abs_order_statistics(x.to_device(Device::cuda()), ranks);
      require_close(gpu.to_device(Device::cpu()), cpu, 0, 0);
    }
  // Ties, zeros, infinities and NaN (sorted above +inf).
  Tensor x = Tensor::from_doubles({-2, 0, 2, NAN, -INFINITY, 1, 0, -1}, {8}, DType::F32);
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<double> v = ops::abs_order_statistics(x.to_device(Device::cuda()), all).to_doubles();
  const std::vector<double> expected = {0, 0, 1, 1, 2, 2, INFINITY};
  for (int i = 0; i < 7; ++i) REQUIRE(v[i] == expected[i]);
  REQUIRE(std::isnan(v[7]));
}

TEST_CASE("cuda: statistics of a bf16 tensor equal the CPU's on its f32 values", "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // GPT-2's FFN hidden is bf16 under bf16 on a GPU: the probes read it as is, output f32.
  for (Shape shape : {Shape{3, 5, 37}, Shape{2, 129, 768}, Shape{(int64_t{1} << 20) + 77}}) {
    INFO(shape_str(shape));
    const Tensor bf16 = random_tensor(shape, 913, DType::F32, 5.0).to_dtype(DType::BF16);
    const Tensor values = bf16.to_dtype(DType::F32);  // exact
    const Tensor on_gpu = bf16.to_device(Device::cuda());
    const int64_t n = values.numel();
    const std::vector<int64_t> ranks = {0, n / 2 - 1, n / 2, n - 3, n - 2, n - 1};
    Tensor gpu = ops::abs_order_statistics(on_gpu, ranks);
    REQUIRE(gpu.dtype() == DType::F32);
    require_close(gpu.to_device(Device::cpu()), ops::abs_order_statistics(values, ranks), 0, 0);
    Tensor rows = ops::row_statistics(on_gpu);
    REQUIRE(rows.dtype() == DType::F32);
    // f32 sums over rows of up to 2^20 elements against the CPU's double: 1e-4 relative.
    require_close(rows.to_device(Device::cpu()), ops::row_statistics(values), 1e-4, 1e-5);
  }
  // Ties, zeros, infinities and NaN in bf16 too.
  Tensor x = Tensor::from_doubles({-2, 0, 2, NAN, -INFINITY, 1, 0, -1}, {8}, DType::F32)
                 .to_dtype(DType::BF16)
                 .to_device(Device::cuda());
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<double> v = ops::abs_order_statistics(x, all).to_doubles();
  const std::vector<double> expected = {0, 0, 1, 1, 2, 2, INFINITY};
  for (int i = 0; i < 7; ++i) REQUIRE(v[i] == expected[i]);
  REQUIRE(std::isnan(v[7]));
}

TEST_CASE("cuda: abs_order_statistics of large tensors is exact (two histograms, brackets)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // From 2^20 elements f32 counts the top 16 bits of every key, then the low 16 under each
  // rank's top bits (global atomics, equal keys of a warp added once); f64 (and f32 on devices
  // without 128 KB of shared memory per block) compacts the candidates in a bracket first.
  // Spread ranks (8 at once, ranks sharing a prefix and not), then ties (60% zeros: millions
  // of keys in one bin), every value equal, and infinities and NaN at the top.
  const int64_t n = (int64_t{1} << 21) + 3;
  const std::vector<int64_t> spread = {0, 1, n / 4, n / 2 - 1, n / 2, 3 * n / 4, n - 2, n - 1};
  for (DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_name(dt));
    std::vector<double> v = random_tensor({n}, 914, DType::F64, 1.0).to_doubles();
    for (size_t i = 0; i < v.size(); i += 97) v[i] = std::exp(8.0 * v[i]);  // a heavy tail
    const Tensor x = Tensor::from_doubles(v, {n}, dt);
    require_close(ops::abs_order_statistics(x.to_device(Device::cuda()), spread)
                      .to_device(Device::cpu()),
                  ops::abs_order_statistics(x, spread), 0, 0);
    std::vector<double> ties(v);
    for (size_t i = 0; i < ties.size(); ++i)
      if (i % 5 < 3) ties[i] = 0;
    const Tensor z = Tensor::from_doubles(ties, {n}, dt);
    require_close(ops::abs_order_statistics(z.to_device(Device::cuda()), spread)
                      .to_device(Device::cpu()),
                  ops::abs_order_statistics(z, spread), 0, 0);
    const Tensor same = Tensor::full({n}, -2.5, dt);
    const std::vector<double> all = ops::abs_order_statistics(same.to_device(Device::cuda()), spread)
                                        .to_doubles();
    for (double a : all) REQUIRE(a == 2.5);
    std::vector<double> tail(v);
    tail[5] = INFINITY;
    tail[n / 3] = -INFINITY;
    tail[n - 7] = NAN;
    const Tensor t = Tensor::from_doubles(tail, {n}, dt);
    const std::vector<double> top =
        ops::abs_order_statistics(t.to_device(Device::cuda()), spread).to_doubles();
    const std::vector<double> expected = ops::abs_order_statistics(t, spread).to_doubles();
    for (size_t i = 0; i + 3 < spread.size(); ++i) REQUIRE(top[i] == expected[i]);
    REQUIRE(top[5] == expected[5]);
    REQUIRE(top[6] == INFINITY);  // rank n - 2: the larger of the two infinities
    REQUIRE(std::isnan(top[7]));  // NaN sorts above +inf
  }
}

TEST_CASE("cuda: abs_order_statistics of large bf16 tensors is exact (one whole-key histogram)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // bf16 keys have 15 bits without the sign: one histogram of 2^15 bins holds every rank. A
  // heavy tail, 60% zeros, one value everywhere, and a view starting 2 bytes past an aligned
  // address (the element path), each against the CPU on the same values.
  const int64_t n = (int64_t{1} << 22) + 5;
  const std::vector<int64_t> spread = {0, 1, n / 4, n / 2 - 1, n / 2, 3 * n / 4, n - 2, n - 1};
  std::vector<double> v = random_tensor({n}, 915, DType::F64, 1.0).to_doubles();
  for (size_t i = 0; i < v.size(); i += 97) v[i] = std::exp(8.0 * v[i]);
  std::vector<double> ties(v);
  for (size_t i = 0; i < ties.size(); ++i)
    if (i % 5 < 3) ties[i] = 0;
  for (const std::vector<double>* values : {&v, &ties}) {
    const Tensor x = Tensor::from_doubles(*values, {n}, DType::F32).to_dtype(DType::BF16);
    const Tensor exact = x.to_dtype(DType::F32);
    require_close(ops::abs_order_statistics(x.to_device(Device::cuda()), spread)
                      .to_device(Device::cpu()),
                  ops::abs_order_statistics(exact, spread), 0, 0);
    const int64_t m = n - 1;
    const std::vector<int64_t> tail = {0, m / 2 - 1, m / 2, m - 1};
    const Tensor shifted = x.to_device(Device::cuda()).narrow_view(0, 1, m);  // 2-byte offset
    require_close(ops::abs_order_statistics(shifted, tail).to_device(Device::cpu()),
                  ops::abs_order_statistics(exact.narrow_view(0, 1, m).copy_contiguous(), tail),
                  0, 0);
  }
  const Tensor same = Tensor::full({n}, -2.5, DType::F32).to_dtype(DType::BF16);
  for (double a : ops::abs_order_statistics(same.to_device(Device::cuda()), spread).to_doubles())
    REQUIRE(a == 2.5);
}

TEST_CASE("cuda: rows_and_abs_order_statistics equals the two probes (one pass fewer for f32)",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // From 2^20 f32 elements in rows of up to 1024 the row statistics come out of the order
  // statistics' first pass (rows of 768 and 1024: 6 and 8 vectors a lane; of 100: 1); rows of
  // 1028 and f64 take the two probes one after the other. Rows to 1e-5 of the CPU, order exact.
  struct Case {
    Shape shape;
    DType dtype;
  };
  for (const Case& c : {Case{{2, 700, 768}, DType::F32}, Case{{1100, 1024}, DType::F32},
                        Case{{10600, 100}, DType::F32}, Case{{1030, 1028}, DType::F32},
                        Case{{2, 700, 768}, DType::F64}, Case{{3, 5, 768}, DType::F32}}) {
    INFO(shape_str(c.shape) << " " << dtype_name(c.dtype));
    std::vector<double> v = random_tensor(c.shape, 918, DType::F64, 1.0).to_doubles();
    for (size_t i = 0; i < v.size(); i += 89) v[i] = std::exp(6.0 * v[i]);  // a heavy tail
    const Tensor x = Tensor::from_doubles(v, c.shape, c.dtype);
    const int64_t n = x.numel();
    const std::vector<int64_t> ranks = {n / 2 - 1, n / 2, n - 3, n - 2, n - 1};
    const ops::RowsAndOrder gpu = ops::rows_and_abs_order_statistics(x.to_device(Device::cuda()),
                                                                     ranks);
    require_close(gpu.rows.to_device(Device::cpu()), ops::row_statistics(x), 1e-5, 1e-6);
    require_close(gpu.order.to_device(Device::cpu()), ops::abs_order_statistics(x, ranks), 0, 0);
    const ops::RowsAndOrder again = ops::rows_and_abs_order_statistics(x.to_device(Device::cuda()),
                                                                       ranks);
    REQUIRE(again.rows.to_doubles() == gpu.rows.to_doubles());  // bit-identical
  }
}

TEST_CASE("cuda: rows_and_abs_order_statistics in one pass (run.one_pass_order_statistics) "
          "equals the CPU, the fallback included",
          "[cuda]") {
  SINKLAB_REQUIRE_CUDA();
  // The row statistics and the partition by the sampled brackets share one read of x; the select
  // then reads the candidates. The sink metrics' ranks (median pair and top three: two ranges),
  // spread ranks (four ranges: counters for every rank), and inputs whose brackets cannot hold
  // the ranks (60% zeros, one value everywhere: the candidates overflow and the select reads x).
  // The row statistics are the same bits as the two-pass path's; the order statistics exact.
  const ops::OnePassOrderStatisticsGuard one_pass(true);
  for (const Shape& shape : {Shape{2, 700, 768}, Shape{1100, 1024}, Shape{10600, 100}}) {
    std::vector<double> v = random_tensor(shape, 919, DType::F64, 1.0).to_doubles();
    for (size_t i = 0; i < v.size(); i += 89) v[i] = std::exp(6.0 * v[i]);  // a heavy tail
    std::vector<double> ties(v);
    for (size_t i = 0; i < ties.size(); ++i)
      if (i % 5 < 3) ties[i] = 0;
    const std::vector<double> same(v.size(), -2.5);
    for (const std::vector<double>* values :
         std::initializer_list<const std::vector<double>*>{&v, &ties, &same}) {
      const Tensor x = Tensor::from_doubles(*values, shape, DType::F32);
      const int64_t n = x.numel();
      INFO(shape_str(shape) << (values == &v ? " heavy tail" : values == &ties ? " ties" : " same"));
      for (const std::vector<int64_t>& ranks :
           {std::vector<int64_t>{n / 2 - 1, n / 2, n - 3, n - 2, n - 1},
            std::vector<int64_t>{0, 1, n / 4, n / 2 - 1, n / 2, n - 3, n - 2, n - 1}}) {
        INFO(ranks.size() << " ranks");
        const Tensor xd = x.to_device(Device::cuda());
        const ops::RowsAndOrder gpu = ops::rows_and_abs_order_statistics(xd, ranks);
        require_close(gpu.order.to_device(Device::cpu()), ops::abs_order_statistics(x, ranks), 0,
                      0);
        require_close(gpu.rows.to_device(Device::cpu()), ops::row_statistics(x), 1e-5, 1e-6);
        ops::RowsAndOrder two_pass;
        {
          const ops::OnePassOrderStatisticsGuard off(false);
          two_pass = ops::rows_and_abs_order_statistics(xd, ranks);
        }
        REQUIRE(gpu.rows.to_doubles() == two_pass.rows.to_doubles());  // one row kernel's sums
        REQUIRE(gpu.order.to_doubles() == two_pass.order.to_doubles());
      }
    }
  }
}
