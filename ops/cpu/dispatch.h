// Runs a kernel body templated on the element type (float or double) of a CPU tensor.
#pragma once
#include "core/tensor.h"

namespace sinklab::cpu {

// body is a generic lambda taking a value of the element type: [&](auto zero) { using T = ...; }
template <class Body>
void dispatch_float(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::F32: body(float{}); return;
    case DType::F64: body(double{}); return;
    default:
      SINKLAB_FAIL(DTypeError, op << ": CPU kernel has no " << dtype_name(dtype) << " version",
                   "CPU kernels compute in f32 or f64: convert with to_dtype(DType::F32)");
  }
}

}  // namespace sinklab::cpu
