// Runs a launcher body templated on the element type (float or double) of a CUDA tensor: the one
// dtype switch shared by the CUDA kernel files (ops/cpu/dispatch.h is the CPU kernels' twin).
#pragma once
#include "core/error.h"
#include "core/tensor.h"

namespace sinklab::cuda {

// body is a generic lambda taking a value of the element type: [&](auto zero) { using T = ...; }
// Other dtypes are a DTypeError naming the op.
template <class Body>
void dispatch_float(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::F32: body(float{}); return;
    case DType::F64: body(double{}); return;
    default:
      SINKLAB_FAIL(DTypeError, op << " (cuda): no " << dtype_name(dtype) << " kernel",
                   "CUDA kernels run in f32 or f64: convert with to_dtype(DType::F32)");
  }
}

}  // namespace sinklab::cuda
