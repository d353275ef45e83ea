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

// Tolerances of a CUDA kernel against the CPU reference. f64: summation order only (1e-10).
// f32: rtol 1e-4, atol 1e-5; `rows` is how many rows a parameter gradient sums: each f32 term
// carries ~1e-7 relative rounding, so a sum over R rows is off by ~1e-7 sqrt(R) absolute however
// it is accumulated (~3e-6 at R ~ 1000, too close to 1e-5 where the sum cancels to ~0), so above
// 200 rows atol is 1e-4 (a wrong kernel is off by O(1)).
CudaCompareOptions tolerance(DType dt, int64_t rows = 0);
// Tolerances of f32 math on bf16 operands (Precision::BF16) against the f32 CPU reference: rtol
// 2e-2 and the given atol, which a caller derives from its sums' lengths (each operand carries
// up to 2^-9 relative rounding).
CudaCompareOptions bf16_operand_tolerance(double atol);
// "f32" / "f64" for test messages.
inline const char* dtype_label(DType dt) { return dt == DType::F32 ? "f32" : "f64"; }

// f maps inputs (all on one device) to an output; the gradient seed is a fixed random tensor.
void require_cuda_matches_cpu(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                              const std::vector<Tensor>& cpu_inputs,
                              CudaCompareOptions options = {});

}  // namespace sinklab::test
