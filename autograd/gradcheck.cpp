#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/random.h"

namespace sinklab::autograd {

namespace {
double projected(const Tensor& out, const std::vector<double>& w) {
  std::vector<double> v = out.to_doubles();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}
}  // namespace

GradCheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          std::vector<Tensor> inputs, const GradCheckOptions& options) {
  for (const Tensor& in : inputs)
    if (in.defined() && in.requires_grad())
      SINKLAB_CHECK(in.dtype() == DType::F64 && in.device().is_cpu() && in.is_contiguous(),
                    DTypeError, "gradcheck: input " << in.str() << " must be contiguous f64 on cpu",
                    "gradient checks run in fp64 on the CPU");
  // Analytic gradients.
  for (Tensor& in : inputs)
    if (in.defined() && in.requires_grad()) in.set_grad(Tensor());
  Tensor out = f(inputs);
  SINKLAB_CHECK(out.dtype() == DType::F64, DTypeError, "gradcheck: output is " << out.str(),
                "compute in f64");
  Tensor w = randn(out.shape(), RngKey{options.seed, 99, 0}, 1.0, DType::F64);
  std::vector<double> wv = w.to_doubles();
  backward(out, w);

  GradCheckResult result;
  std::ostringstream report;
  int failures = 0;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;
    Tensor analytic = in.grad();
    std::vector<double> a = analytic.defined() ? analytic.to_doubles()
                                               : std::vector<double>(in.numel(), 0.0);
    double* x = in.data<double>();
    for (int64_t i = 0; i < in.numel(); ++i) {
      const double saved = x[i];
      x[i] = saved + options.eps;
      double plus = projected(f(inputs), wv);
      x[i] = saved - options.eps;
      double minus = projected(f(inputs), wv);
      x[i] = saved;
      double numeric = (plus - minus) / (2 * options.eps);
      double err = std::fabs(a[i] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (!(err <= options.atol + options.rtol * std::fabs(numeric))) {
        result.ok = false;
        if (failures++ < 8)
          report << "input " << k << " " << in.str() << " element " << i << ": analytic " << a[i]
                 << " numeric " << numeric << "\n";
      }
    }
  }
  if (failures) report << failures << " element(s) out of tolerance\n";
  result.report = report.str();
  return result;
}

}  // namespace sinklab::autograd
