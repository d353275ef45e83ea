// [cuda] test helper: runs an op on the CPU reference and on the GPU from the same random inputs
// and compares the outputs and the gradients of every input that requires grad.
#pragma once
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace sinklab::test {

struct CudaCompareOptions {
  double rtol = 1e-4;  // f32 kernels vs the f32 CPU reference
  double atol = 1e-5;
  bool check_backward = true;
};

// f maps inputs (all on one device) to an output; the gradient seed is a fixed random tensor.
void require_cuda_matches_cpu(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                              const std::vector<Tensor>& cpu_inputs,
                              CudaCompareOptions options = {});

}  // namespace sinklab::test
