#include "tests/helpers.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/storage.h"
#if defined(SINKLAB_HAVE_TRAIN)
#include "train/data/gpt2_vocab.h"
#include "train/data/split_regex.h"
#endif
#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/runtime.h"
#endif

namespace sinklab::test {

Tensor random_tensor(const Shape& shape, uint64_t stream, DType dtype, double stddev,
                     bool requires_grad) {
  Tensor t = randn(shape, RngKey{20261129, stream, 0}, stddev, dtype);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

double closeness(const std::vector<double>& actual, const std::vector<double>& expected,
                 double rtol, double atol) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double diff = std::fabs(actual[i] - expected[i]);
    double err = diff == 0 ? 0.0 : diff / (atol + rtol * std::fabs(expected[i]));
    if (std::isnan(actual[i]) != std::isnan(expected[i])) err = INFINITY;
    if (!(err <= worst)) worst = err;  // keeps NaN as a failure
  }
  return worst;
}

void require_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                   double atol) {
  std::vector<double> a = actual.to_doubles();
  REQUIRE(a.size() == expected.size());
  double c = closeness(a, expected, rtol, atol);
  if (!(c <= 1.0)) {
    std::ostringstream msg;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::fabs(a[i] - expected[i]) > atol + rtol * std::fabs(expected[i]) ||
          std::isnan(a[i])) {
        msg << "first mismatch at element " << i << ": got " << a[i] << ", expected "
            << expected[i];
        break;
      }
    }
    INFO(actual.str() << ": " << msg.str());
    REQUIRE(c <= 1.0);
  }
}

void require_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  REQUIRE(actual.shape() == expected.shape());
  require_close(actual, expected.to_doubles(), rtol, atol);
}

void require_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                       const std::vector<Tensor>& inputs, double atol, double rtol) {
  autograd::GradCheckOptions options;
  options.atol = atol;
  options.rtol = rtol;
  autograd::GradCheckResult r = autograd::gradcheck(f, inputs, options);
  INFO(r.report);
  REQUIRE(r.ok);
}

bool on_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

bool mpirun_present() { return std::system("command -v mpirun > /dev/null 2>&1") == 0; }

std::string corpora_dir() {
  for (const std::string dir : {SINKLAB_SOURCE_DIR "/data/raw", SINKLAB_SOURCE_DIR "/../shared/data"}) {
    std::ifstream moby(dir + "/moby_dick.txt"), sotu(dir + "/sotu.txt");
    if (moby.good() && sotu.good()) return dir;
  }
  return "";
}

#if defined(SINKLAB_HAVE_TRAIN)
std::string gpt2_vocab_dir() {
  try {
    return train::find_gpt2_vocab_dir();
  } catch (const Error&) {
    return "";
  }
}
bool pcre2_built() { return train::split_regex_available(); }
#else
std::string gpt2_vocab_dir() { return ""; }
bool pcre2_built() { return false; }
#endif

bool cuda_device_present() {
#if defined(SINKLAB_HAVE_CUDA)
  return cuda::initialize();
#else
  return false;
#endif
}

}  // namespace sinklab::test
