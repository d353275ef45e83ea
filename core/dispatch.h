// Runs a kernel body templated on the element type (float or double) of a tensor: the one dtype
// switch shared by the CPU reference kernels (ops/cpu/) and the CUDA kernels (cuda/).
#pragma once
#include "core/error.h"
#include "core/tensor.h"

namespace sinklab {

// body is a generic lambda taking a value of the element type: [&](auto zero) { using T = ...; }
// Other dtypes are a DTypeError naming the op.
template <class Body>
void dispatch_float(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::F32: body(float{}); return;
    case DType::F64: body(double{}); return;
    default:
      SINKLAB_FAIL(DTypeError, op << ": no " << dtype_name(dtype) << " kernel",
                   "kernels compute in f32 or f64 (bf16 is a storage format): convert with "
                   "to_dtype(DType::F32)");
  }
}

}  // namespace sinklab
