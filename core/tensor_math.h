// The few whole-tensor arithmetic helpers the autograd engine needs (below the op table).
#pragma once
#include "core/tensor.h"

namespace sinklab {

// dst += src, elementwise, same shape and dtype; dst may be a strided view (e.g. a flat buffer).
void add_into(Tensor& dst, const Tensor& src);

// a + b in a fresh contiguous tensor, same shape and dtype: a sum of two gradients that leaves
// both alone (on the GPU one pass, where a copy and then add_into would be two; the CPU does
// the copy and the add).
Tensor sum_of(const Tensor& a, const Tensor& b);

// CUDA implementation slot, installed by cuda/ when it is built: out = a + b for contiguous
// tensors of one shape and dtype; out may be a (in place).
using AddFn = void (*)(const Tensor& a, const Tensor& b, Tensor& out);
void install_cuda_add(AddFn fn);

}  // namespace sinklab
