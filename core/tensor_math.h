// The few whole-tensor arithmetic helpers the autograd engine needs (below the op table).
#pragma once
#include "core/tensor.h"

namespace sinklab {

// dst += src, elementwise, same shape and dtype; dst may be a strided view (e.g. a flat buffer).
void add_into(Tensor& dst, const Tensor& src);

// CUDA implementation slot, installed by cuda/ when it is built.
using AddIntoFn = void (*)(Tensor& dst, const Tensor& src);
void install_cuda_add_into(AddIntoFn fn);

}  // namespace sinklab
