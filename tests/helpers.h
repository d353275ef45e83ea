// Shared test helpers: seeded random tensors, closeness checks, gradient checks, GPU skip.
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/catch.h"

namespace sinklab::test {

// Normal(0, stddev) tensor; each call site passes its own stream so tests are independent.
Tensor random_tensor(const Shape& shape, uint64_t stream, DType dtype = DType::F64,
                     double stddev = 1.0, bool requires_grad = false);

// Largest |a - b| / (atol + rtol |b|); <= 1 means close. Shapes must match.
double closeness(const std::vector<double>& actual, const std::vector<double>& expected,
                 double rtol, double atol);

// REQUIRE-style check with a readable failure message.
void require_close(const Tensor& actual, const std::vector<double>& expected, double rtol = 1e-9,
                   double atol = 1e-9);
void require_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-9,
                   double atol = 1e-9);

// Gradient check of f at inputs (f64; those with requires_grad are checked).
void require_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                       const std::vector<Tensor>& inputs, double atol = 1e-6, double rtol = 1e-5);

bool cuda_device_present();

// CI=true: a missing test dependency fails there instead of skipping.
bool on_ci();
// The folder of GPT-2's vocabulary (scripts/get_data.sh installs data/gpt2/), or "" when it is
// not installed: the [gpt2] tests then skip (ctest `gpt2`), except on CI.
std::string gpt2_vocab_dir();
// Whether the trainer was built with PCRE2 (false without the trainer).
bool pcre2_built();
// Whether Open MPI's mpirun is on PATH: the [mpi] tests launch ranks with it (ctest `mpi`
// skips without it, except on CI).
bool mpirun_present();
// The folder of the shipped corpora, moby_dick.txt and sotu.txt (data/raw/ or ../shared/data
// beside the repository, from scripts/get_data.sh), or "" when neither holds them.
std::string corpora_dir();

// Runs f, requires that it throws E, and returns the exception (a FAIL when it does not).
template <class E, class F>
E caught(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  FAIL("expected an exception of the requested type");
  throw std::logic_error("unreachable: FAIL throws");
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace sinklab::test

// Skips the rest of a [cuda] test when no GPU is present (SKIP on Catch2 3, a warning on 2).
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
#define SINKLAB_REQUIRE_CUDA()                                                    \
  do {                                                                            \
    if (!::sinklab::test::cuda_device_present()) SKIP("no CUDA device present");  \
  } while (0)
#define SINKLAB_SKIP_TEST(why) SKIP(why)
#else
#define SINKLAB_SKIP_TEST(why) \
  do {                         \
    WARN("skipped: " why);     \
    return;                    \
  } while (0)
#define SINKLAB_REQUIRE_CUDA()                                           \
  do {                                                                   \
    if (!::sinklab::test::cuda_device_present()) {                       \
      WARN("skipped: no CUDA device present");                           \
      return;                                                            \
    }                                                                    \
  } while (0)
#endif

// Skips the rest of a test when `present` is false (`what` says what is missing and how to get
// it); on CI (CI=true) the test fails instead.
#define SINKLAB_REQUIRE_DEPENDENCY(present, what)        \
  do {                                                   \
    if (!(present)) {                                    \
      if (::sinklab::test::on_ci()) FAIL("CI: " what);   \
      SINKLAB_SKIP_TEST(what);                           \
    }                                                    \
  } while (0)
// The gpt2 and hf: tokenizers' split patterns.
#define SINKLAB_REQUIRE_PCRE2()                          \
  SINKLAB_REQUIRE_DEPENDENCY(::sinklab::test::pcre2_built(), \
                             "sinklab was built without PCRE2 (install libpcre2-dev and rebuild)")
// The shipped corpora, for the [gpt2] tests.
#define SINKLAB_REQUIRE_CORPORA()                                      \
  SINKLAB_REQUIRE_DEPENDENCY(!::sinklab::test::corpora_dir().empty(), \
                             "the corpora are not in data/raw (bash scripts/get_data.sh)")
// GPT-2's vocabulary (and PCRE2), for the [gpt2] tests.
#define SINKLAB_REQUIRE_GPT2_VOCAB()                                                      \
  do {                                                                                    \
    SINKLAB_REQUIRE_PCRE2();                                                              \
    SINKLAB_REQUIRE_DEPENDENCY(!::sinklab::test::gpt2_vocab_dir().empty(),                \
                               "GPT-2's vocabulary is not installed (bash scripts/get_data.sh)"); \
  } while (0)
