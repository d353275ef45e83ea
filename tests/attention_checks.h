// Shared by the [cuda] attention tests (test_cuda_attention.cpp for the own kernels,
// test_cuda_cudnn_attention.cpp for cuDNN's): one forward + backward's results as host copies,
// and the bf16 tolerance check against the CPU reference.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "core/tensor.h"
#include "ops/attention.h"
#include "tests/helpers.h"

namespace sinklab::test {

// out, lse (softmax only), dq, dk, dv of one attention forward + backward with gradient seed
// `seed`, the inputs converted to `dtype` on `device`; host copies. Fresh leaves each call.
inline std::vector<std::vector<double>> attention_results(const Tensor& q, const Tensor& k,
                                                   const Tensor& v, const Tensor& seed,
                                                   const ops::AttentionOptions& options,
                                                   Device device, DType dtype) {
  std::vector<Tensor> in;
  for (const Tensor& t : {q, k, v}) {
    Tensor d = t.detach().to_dtype(dtype).to_device(device);
    d.set_requires_grad(true);
    in.push_back(d);
  }
  Tensor lse;
  Tensor out = ops::attention(in[0], in[1], in[2], options, &lse);
  autograd::backward(out, seed.to_dtype(dtype).to_device(device));
  std::vector<std::vector<double>> r;
  r.push_back(out.to_doubles());
  if (lse.defined()) r.push_back(lse.to_doubles());
  for (const Tensor& t : in) r.push_back(t.grad().to_doubles());
  return r;
}

// Tolerance of the tensor-core (bf16) attention: max |gpu - cpu| <= tol * max(1, max |cpu|)
// over a whole tensor. bf16 operands keep 8 significant bits (relative rounding <= 2^-9 ~ 2e-3);
// through dot products of 64-128 terms, the softmax and the backward's dS = P (dP - D) (D in fp32
// from the unrounded dO), errors of a few 1e-3 of a tensor's largest entry are typical: tol = 2e-2
// leaves a margin while any indexing or masking error (an O(1) error) fails. The floor of 1 (the
// inputs' scale) covers tensors that are ~0 in exact arithmetic (dq, dk at T = 1) where the
// rounding leaves O(1e-3).
inline void require_close_to_scale(const std::vector<double>& actual, const std::vector<double>& expected,
                            double tol) {
  REQUIRE(actual.size() == expected.size());
  double scale = 1.0;
  for (double x : expected) scale = std::max(scale, std::fabs(x));
  const double c = test::closeness(actual, expected, 0.0, tol * scale);
  INFO("max |gpu - cpu| = " << c * tol * scale << ", allowed " << tol * scale);
  REQUIRE(c <= 1.0);
}

constexpr double kBf16Tolerance = 2e-2;

}  // namespace sinklab::test
