#include "ops/reduce.h"

#include "autograd/node.h"
#include "ops/cpu/reduce.h"

namespace sinklab::ops {

OpKernels<SumForwardFn, SumBackwardFn> sum_kernels{"sum", cpu::sum_forward, cpu::sum_backward};

namespace {
Tensor scaled_sum(const Tensor& x, double factor, const char* name) {
  check_defined(x, name, "x");
  check_contiguous(x, name, "x");
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  sum_kernels.forward(x.device())(x, factor, out);
  autograd::record(out, name, {x}, [x = x.detach(), factor](const Tensor& g) {
    Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
    sum_kernels.backward(x.device())(g, factor, gx);
    return std::vector<Tensor>{gx};
  });
  return out;
}
}  // namespace

Tensor sum(const Tensor& x) { return scaled_sum(x, 1.0, "sum"); }

Tensor mean(const Tensor& x) {
  SINKLAB_CHECK(x.numel() > 0, ShapeError, "mean of empty tensor " << x.str(),
                "mean needs at least one element");
  return scaled_sum(x, 1.0 / static_cast<double>(x.numel()), "mean");
}

}  // namespace sinklab::ops
