// Gradient check: analytic gradients (backward) against central finite differences in fp64.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sinklab::autograd {

struct GradCheckOptions {
  double eps = 1e-6;    // finite-difference step
  double atol = 1e-6;   // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the random projection of the output
};

struct GradCheckResult {
  bool ok = true;
  double max_abs_error = 0;
  std::string report;  // first failures: input, element, analytic, numeric
};

// f maps the inputs (f64 CPU tensors; those with requires_grad are checked) to any f64 output.
// The scalar checked is sum(f(inputs) * w) for a fixed random w, so every output element counts.
GradCheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          std::vector<Tensor> inputs, const GradCheckOptions& options = {});

}  // namespace sinklab::autograd
