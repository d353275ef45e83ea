// Checks shared by the op tests (header-only, on top of tests/helpers.h).
#pragma once
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "tests/helpers.h"

namespace sinklab::test {

// Requires that fn() throws an E whose message contains every one of `parts`.
template <class E, class Fn>
void require_error(Fn&& fn, std::initializer_list<std::string> parts) {
  std::string what;
  try {
    fn();
  } catch (const E& e) {
    what = e.what();
  }
  INFO("message: " << what);
  REQUIRE(!what.empty());  // empty: nothing thrown (another error type escapes to Catch)
  for (const std::string& part : parts) {
    INFO("expected in message: " << part);
    REQUIRE(what.find(part) != std::string::npos);
  }
}

// Gradients of sum(f(inputs) * w) with respect to the inputs flagged in `differentiable`,
// computed in `dtype` (the inputs and w are converted first; others are passed unchanged).
// Returned in fp64 logical order; used to check f32 backward kernels against the f64 ones.
inline std::vector<std::vector<double>> gradients_in(
    DType dtype, const std::function<Tensor(const std::vector<Tensor>&)>& f,
    const std::vector<Tensor>& inputs, const std::vector<bool>& differentiable, const Tensor& w) {
  std::vector<Tensor> converted;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // A fresh leaf per run (to_dtype returns the tensor itself when the dtype already matches).
    Tensor t = differentiable[i] ? inputs[i].to_dtype(dtype).copy_contiguous() : inputs[i];
    if (differentiable[i]) t.set_requires_grad(true);
    converted.push_back(t);
  }
  autograd::backward(f(converted), w.to_dtype(dtype));
  std::vector<std::vector<double>> grads;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (differentiable[i]) grads.push_back(converted[i].grad().to_doubles());
  return grads;
}

// The f32 backward agrees with the f64 backward on the same values (f64 inputs given).
inline void require_f32_gradients_match(
    const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
    const std::vector<bool>& differentiable, const Tensor& w, double tol = 2e-5) {
  // Round the inputs to f32 first so both runs see identical values.
  std::vector<Tensor> rounded;
  for (size_t i = 0; i < inputs.size(); ++i)
    rounded.push_back(differentiable[i] ? inputs[i].to_dtype(DType::F32).to_dtype(DType::F64)
                                        : inputs[i]);
  Tensor w64 = w.to_dtype(DType::F32).to_dtype(DType::F64);
  auto g64 = gradients_in(DType::F64, f, rounded, differentiable, w64);
  auto g32 = gradients_in(DType::F32, f, rounded, differentiable, w64);
  REQUIRE(g64.size() == g32.size());
  for (size_t k = 0; k < g64.size(); ++k) {
    INFO("gradient of differentiable input #" << k);
    REQUIRE(closeness(g32[k], g64[k], tol, tol) <= 1.0);
  }
}

}  // namespace sinklab::test
