// CPU products through OpenBLAS against the own blocked kernel (the reference), f32 and f64:
// random shapes across OpenBLAS's and the reference's blocks, every transpose, row strides wider
// than a row (sub-matrices), batched with a shared or per-entry b, accumulate on and off; and the
// run-time choice between the two. Skipped in a build without OpenBLAS.
#include <algorithm>
#include <array>
#include <cmath>

#include "ops/cpu/blas_gemm.h"
#include "ops/cpu/gemm.h"
#include "ops/matmul.h"
#include "tests/helpers.h"

using namespace sinklab;
using test::random_tensor;
using test::require_close;

namespace {

// Tolerances of one product's elements, sums of K unit-normal products in another order: the
// rounding grows like sqrt(K) relative to a typical element, itself about sqrt(K).
double unit_roundoff(DType dtype) { return dtype == DType::F32 ? 6e-8 : 1.1e-16; }
double product_rtol(DType dtype, int64_t K) {
  return 8 * unit_roundoff(dtype) * std::sqrt(static_cast<double>(std::max<int64_t>(K, 1)));
}
double product_atol(DType dtype, int64_t K) {
  return 8 * unit_roundoff(dtype) * static_cast<double>(std::max<int64_t>(K, 1));
}

Tensor copy_of(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  out.copy_from(t);
  return out;
}

// Restores the process-wide choice when a test case ends (also on a failed REQUIRE).
struct GemmChoiceGuard {
  cpu::CpuGemm saved = cpu::cpu_gemm();
  ~GemmChoiceGuard() { cpu::set_cpu_gemm(saved); }
};

// (rows, cols) values laid out with rows `ld` >= cols elements apart (the rest filler).
template <class T>
std::vector<T> with_row_stride(const Tensor& t, int64_t ld, T filler) {
  const int64_t rows = t.size(0), cols = t.size(1);
  std::vector<T> out(rows * ld, filler);
  const T* p = t.data<T>();
  for (int64_t r = 0; r < rows; ++r)
    std::copy(p + r * cols, p + (r + 1) * cols, out.data() + r * ld);
  return out;
}

// blas_gemm on operands with row strides wider than their rows (and a C inside a wider one)
// equals the reference gemm on packed copies; the filler between rows stays untouched.
template <class T>
void check_strided(DType dtype, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                   bool accumulate, uint64_t seed) {
  Tensor a = random_tensor(ta ? Shape{K, M} : Shape{M, K}, seed, dtype);
  Tensor b = random_tensor(tb ? Shape{N, K} : Shape{K, N}, seed + 1, dtype);
  Tensor c0 = random_tensor({M, N}, seed + 2, dtype);
  const int64_t lda = a.size(1) + 3, ldb = b.size(1) + 5, ldc = N + 7;
  const T filler = T(12345);
  std::vector<T> A = with_row_stride<T>(a, lda, filler), B = with_row_stride<T>(b, ldb, filler);
  std::vector<T> C = with_row_stride<T>(c0, ldc, filler);
  cpu::blas_gemm<T>(M, N, K, A.data(), lda, ta, B.data(), ldb, tb, C.data(), ldc, accumulate);

  Tensor expected = copy_of(c0);
  cpu::gemm<T>(M, N, K, a.data<T>(), ta, b.data<T>(), tb, expected.data<T>(), accumulate);
  std::vector<double> got(M * N);
  int64_t filler_changed = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < ldc; ++n) {
      if (n < N) got[m * N + n] = C[m * ldc + n];
      else filler_changed += C[m * ldc + n] != filler;
    }
  INFO("M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb
            << " accumulate=" << accumulate << " " << dtype_name(dtype));
  REQUIRE(filler_changed == 0);
  require_close(Tensor::from_doubles(got, {M, N}, DType::F64), expected.to_doubles(),
                product_rtol(dtype, K), product_atol(dtype, K));
}

}  // namespace

TEST_CASE("OpenBLAS products equal the reference kernel: shapes, transposes, strides",
          "[ops][blas]") {
  SINKLAB_REQUIRE_DEPENDENCY(cpu::openblas_built(),
                             "built without OpenBLAS (install libopenblas-dev and reconfigure)");
  // Shapes below, at and across the blocks of both kernels (reference: 16 rows, 256 deep,
  // 512 wide), with odd remainders, and large enough for the row split over threads.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 4, 0}, {17, 33, 65}, {64, 64, 64}, {37, 530, 300},
      {300, 97, 257}, {256, 768, 256}, {129, 5, 1031}};
  uint64_t seed = 100;
  for (const auto& [M, N, K] : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool accumulate : {false, true}) {
          check_strided<float>(DType::F32, M, N, K, ta, tb, accumulate, seed);
          check_strided<double>(DType::F64, M, N, K, ta, tb, accumulate, seed + 3);
          seed += 6;
        }
}

TEST_CASE("OpenBLAS batched products equal the reference kernel", "[ops][blas]") {
  SINKLAB_REQUIRE_DEPENDENCY(cpu::openblas_built(),
                             "built without OpenBLAS (install libopenblas-dev and reconfigure)");
  const int64_t M = 45, N = 70, K = 33;
  uint64_t seed = 200;
  for (DType dtype : {DType::F32, DType::F64})
    for (int64_t batch : {1, 2, 5})
      for (bool shared : {false, true})
        for (bool ta : {false, true})
          for (bool tb : {false, true})
            for (bool accumulate : {false, true}) {
              Tensor a = random_tensor(ta ? Shape{batch, K, M} : Shape{batch, M, K}, seed, dtype);
              const int64_t b_batch = shared ? 1 : batch;
              Tensor b = random_tensor(tb ? Shape{b_batch, N, K} : Shape{b_batch, K, N},
                                       seed + 1, dtype);
              Tensor c = random_tensor({batch, M, N}, seed + 2, dtype);
              Tensor expected = copy_of(c);
              seed += 3;
              cpu::blas_batched_gemm(a, ta, b, tb, c, accumulate);
              cpu::reference_batched_gemm(a, ta, b, tb, expected, accumulate);
              INFO("batch=" << batch << " shared=" << shared << " ta=" << ta << " tb=" << tb
                            << " accumulate=" << accumulate << " " << dtype_name(dtype));
              require_close(c, expected.to_doubles(), product_rtol(dtype, K),
                            product_atol(dtype, K));
            }
}

TEST_CASE("the CPU product kernel is chosen at run time; the reference is bit-exact",
          "[ops][blas]") {
  GemmChoiceGuard guard;
  Tensor a = random_tensor({2, 40, 50}, 300, DType::F32);
  Tensor b = random_tensor({50, 60}, 301, DType::F32);
  Tensor expected = Tensor::empty({2, 40, 60}, DType::F32);
  cpu::reference_batched_gemm(a, false, b.reshape_view({1, 50, 60}), false, expected, false);

  cpu::set_cpu_gemm(cpu::CpuGemm::kReference);
  REQUIRE(cpu::cpu_gemm_description().find("own blocked kernel") != std::string::npos);
  REQUIRE(ops::matmul(a, b).to_doubles() == expected.to_doubles());  // the same sums exactly

  if (cpu::openblas_built()) {
    cpu::set_cpu_gemm(cpu::CpuGemm::kOpenBLAS);
    REQUIRE(cpu::cpu_gemm_description().find("OpenBLAS") != std::string::npos);
    require_close(ops::matmul(a, b), expected.to_doubles(), product_rtol(DType::F32, 50),
                  product_atol(DType::F32, 50));
  } else {
    REQUIRE_THROWS_AS(cpu::set_cpu_gemm(cpu::CpuGemm::kOpenBLAS), ConfigError);
  }
}
