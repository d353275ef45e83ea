#include "ops/add_norm.h"

#include "core/precision.h"

namespace sinklab::ops {

DType norm_output_dtype(const Tensor& x, NormOutput output) {
  const bool operand = output == NormOutput::kOperandDType && x.device().is_cuda() &&
                       x.dtype() == DType::F32 && cuda_precision() == Precision::BF16;
  return operand ? DType::BF16 : x.dtype();
}

}  // namespace sinklab::ops
