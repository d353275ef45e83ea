// Tensor storage, views, dtypes, RNG and error messages.
#include <cmath>

#include "core/concat_flat.h"
#include "core/device_runtime.h"
#include "core/philox.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"

using namespace sinklab;

TEST_CASE("tensor factories and metadata", "[tensor]") {
  Tensor t = Tensor::zeros({2, 3, 4});
  REQUIRE(t.numel() == 24);
  REQUIRE(t.dim() == 3);
  REQUIRE(t.size(-1) == 4);
  REQUIRE(t.strides() == Shape{12, 4, 1});
  REQUIRE(t.is_contiguous());
  REQUIRE(t.dtype() == DType::F32);
  REQUIRE(t.device().is_cpu());
  Tensor f = Tensor::full({3}, 2.5, DType::F64);
  REQUIRE(f.to_doubles() == std::vector<double>{2.5, 2.5, 2.5});
  Tensor s = Tensor::from_doubles({7.0}, {});
  REQUIRE(s.item() == 7.0);
  REQUIRE(s.dim() == 0);
}

TEST_CASE("the CPU runtime's peak memory is the resident set's high-water mark", "[tensor]") {
  DeviceRuntime& runtime = device_runtime(Device::cpu());
  const double before = runtime.memory_peak_mib();
  REQUIRE(std::isfinite(before));
  REQUIRE(before >= runtime.memory_in_use_mib() - 1);  // sampled a moment apart
  {  // 256 MiB written (resident), then freed: the mark stays
    Tensor big = Tensor::full({64 << 20}, 1.0, DType::F32);
    REQUIRE(big.numel() == 64 << 20);
    REQUIRE(runtime.memory_in_use_mib() >= 256);
  }
  REQUIRE(runtime.memory_peak_mib() >= 256);
  REQUIRE(runtime.memory_peak_mib() >= before);
}

TEST_CASE("views share storage: reshape, transpose, narrow, contiguous", "[tensor]") {
  Tensor t = Tensor::from_doubles({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor r = t.reshape_view({3, 2});
  REQUIRE(r.same_storage(t));
  REQUIRE(r.to_doubles() == std::vector<double>{0, 1, 2, 3, 4, 5});
  Tensor tr = t.transpose_view(0, 1);
  REQUIRE(tr.shape() == Shape{3, 2});
  REQUIRE_FALSE(tr.is_contiguous());
  REQUIRE(tr.to_doubles() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor c = tr.copy_contiguous();
  REQUIRE(c.is_contiguous());
  REQUIRE_FALSE(c.same_storage(t));
  REQUIRE(c.to_doubles() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor n = t.narrow_view(1, 1, 2);
  REQUIRE(n.to_doubles() == std::vector<double>{1, 2, 4, 5});
  n.fill(9);
  REQUIRE(t.to_doubles() == std::vector<double>{0, 9, 9, 3, 9, 9});
  Tensor inferred = t.reshape_view({-1, 2});
  REQUIRE(inferred.shape() == Shape{3, 2});
  REQUIRE_THROWS_AS(tr.reshape_view({6}), ShapeError);
  REQUIRE_THROWS_AS(t.reshape_view({4, 2}), ShapeError);
  REQUIRE_THROWS_AS(t.narrow_view(1, 2, 2), ShapeError);
}

TEST_CASE("concat_flat puts every part's elements in row-major order, one after another",
          "[tensor]") {
  const Tensor a = Tensor::from_doubles({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F32);
  const Tensor b = Tensor::from_doubles({7, 8}, {2}, DType::F32);
  const Tensor empty = Tensor::empty({0, 3}, DType::F32, Device::cpu());
  // a transpose (3, 2), a column (2, 1), an empty part and a contiguous vector.
  const std::vector<double> got =
      concat_flat({a.transpose_view(0, 1), a.narrow_view(1, 2, 1), empty, b}).to_doubles();
  REQUIRE(got == std::vector<double>{1, 4, 2, 5, 3, 6, 3, 6, 7, 8});
  test::caught<DTypeError>(
      [&] { concat_flat({a, b.to_dtype(DType::F64)}); });
  test::caught<ShapeError>([&] { concat_flat({}); });
}

TEST_CASE("bf16 round-trips and rounds to nearest even", "[tensor]") {
  REQUIRE(bf16_to_float(float_to_bf16(1.0f)) == 1.0f);
  REQUIRE(bf16_to_float(float_to_bf16(-3.5f)) == -3.5f);
  // 1 + 2^-8 is halfway between two bf16 values: ties to even gives 1.
  REQUIRE(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
  REQUIRE(bf16_to_float(float_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 1.0f / 64);
  REQUIRE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  Tensor x = Tensor::from_doubles({0.1, 1000.0, -2.0}, {3});
  Tensor h = x.to_dtype(DType::BF16);
  REQUIRE(h.dtype() == DType::BF16);
  std::vector<double> back = h.to_dtype(DType::F32).to_doubles();
  for (size_t i = 0; i < 3; ++i)
    REQUIRE(std::fabs(back[i] - x.to_doubles()[i]) <= std::fabs(x.to_doubles()[i]) / 128);
}

TEST_CASE("Philox matches the Random123 known-answer vectors", "[rng]") {
  // Philox4x32-10 known answers (Random123 kat_vectors): counter all 0, key all 0.
  PhiloxBlock z = philox4x32_10(0, 0, 0);
  REQUIRE(z.v[0] == 0x6627e8d5u);
  REQUIRE(z.v[1] == 0xe169c58du);
  REQUIRE(z.v[2] == 0xbc57ac4cu);
  REQUIRE(z.v[3] == 0x9b00dbd8u);
  // counter all 0xffffffff, key all 0xffffffff.
  PhiloxBlock f = philox4x32_10(~0ull, ~0ull, ~0ull);
  REQUIRE(f.v[0] == 0x408f276du);
  REQUIRE(f.v[1] == 0x41c83b0eu);
  REQUIRE(f.v[2] == 0xa20bc7c6u);
  REQUIRE(f.v[3] == 0x6d5451fdu);
}

TEST_CASE("RNG: same (seed, stream, offset) gives the same numbers; slices regenerate", "[rng]") {
  Tensor a = randn({1000}, RngKey{1, 2, 0});
  Tensor b = randn({1000}, RngKey{1, 2, 0});
  REQUIRE(a.to_doubles() == b.to_doubles());
  Tensor c = randn({1000}, RngKey{1, 3, 0});
  REQUIRE(a.to_doubles() != c.to_doubles());
  Tensor tail = randn({10}, RngKey{1, 2, 990});
  std::vector<double> av = a.to_doubles();
  REQUIRE(tail.to_doubles() == std::vector<double>(av.begin() + 990, av.end()));
  // Moments of 1e5 normals and uniforms.
  std::vector<double> n = randn({100000}, RngKey{7, 0, 0}).to_doubles();
  double mean = 0, var = 0;
  for (double v : n) mean += v;
  mean /= n.size();
  for (double v : n) var += (v - mean) * (v - mean);
  var /= n.size();
  REQUIRE(std::fabs(mean) < 0.02);
  REQUIRE(std::fabs(var - 1.0) < 0.02);
  std::vector<double> u = rand_uniform({100000}, RngKey{7, 1, 0}).to_doubles();
  double umean = 0;
  for (double v : u) {
    REQUIRE(v >= 0.0);
    REQUIRE(v < 1.0);
    umean += v;
  }
  REQUIRE(std::fabs(umean / u.size() - 0.5) < 0.01);
  std::vector<double> ints = rand_ints({10000}, RngKey{7, 2, 0}, 5).to_doubles();
  for (double v : ints) REQUIRE((v >= 0 && v < 5));
}

TEST_CASE("errors carry the kind, file:line and a hint", "[errors]") {
  Tensor t = Tensor::zeros({2, 3});
  try {
    (void)t.reshape_view({5});
    FAIL("expected a ShapeError");
  } catch (const ShapeError& e) {
    std::string what = e.what();
    REQUIRE(what.find("shape error") != std::string::npos);
    REQUIRE(what.find("(2, 3)") != std::string::npos);
    REQUIRE(what.find("hint:") != std::string::npos);
    REQUIRE(what.find("tensor.cpp:") != std::string::npos);
  }
  REQUIRE_THROWS_AS(t.data<double>(), DTypeError);
  REQUIRE_THROWS_AS(Tensor::empty({2}, DType::F32, Device::cuda(0)), DeviceError);
  REQUIRE_THROWS_AS(parse_device("gpu"), ValueError);
  REQUIRE(parse_device("cuda:1").index == 1);
}

TEST_CASE("device auto: cuda:0 where a GPU is present, the CPU elsewhere", "[tensor]") {
  const bool gpu = test::cuda_device_present();  // installs the CUDA runtime where it can
  REQUIRE(device_available(DeviceKind::CPU));
  REQUIRE(device_available(DeviceKind::CUDA) == gpu);
  REQUIRE(resolve_device("auto") == (gpu ? Device::cuda(0) : Device::cpu()));
  REQUIRE(resolve_device("cpu") == Device::cpu());
  REQUIRE(resolve_device("cuda:1") == Device::cuda(1));  // named devices are taken as named
  REQUIRE_THROWS_AS(resolve_device("gpu"), ValueError);
}

TEST_CASE("sizes that overflow or exceed memory are errors naming the shape, not corruption",
          "[tensor]") {
  using test::require_error;
  const int64_t big = int64_t{1} << 40;
  // 2^80 elements: the product wraps around in 64 bits (to 0 here) unless checked.
  require_error<ShapeError>([&] { Tensor::empty({big, big}); },
                            {"(1099511627776, 1099511627776) has more elements than"});
  // 2^62 f32 elements fit a 64-bit count, but not their 2^64 bytes.
  require_error<ShapeError>([&] { Tensor::empty({int64_t{1} << 62}, DType::F32); },
                            {"more elements than a 64-bit count holds"});
  require_error<ShapeError>([&] { Tensor::empty({3, -2}); }, {"negative dimension in shape (3, -2)"});
  // 2^56 bytes: a valid count that no CPU can allocate: a DeviceError, not std::bad_alloc.
  require_error<DeviceError>([&] { Tensor::empty({int64_t{1} << 54}, DType::F32); },
                             {"cannot allocate 72057594037927936 bytes"});
}
