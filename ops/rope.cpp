#include "ops/rope.h"

#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/rope.h"

namespace sinklab::ops {

OpKernels<RopeFn, RopeFn> rope_kernels{"rope", cpu::rope_forward, cpu::rope_backward};

Tensor rope(const Tensor& x, double theta, int64_t position_offset) {
  check_defined(x, "rope", "x");
  check_float(x, "rope", "x");
  SINKLAB_CHECK(x.dim() == 4, ShapeError,
                "rope: x " << shape_str(x.shape()) << " must be (B, T, NH, HS)",
                "split the heads first: (B, T, C) -> (B, T, NH, HS) with reshape");
  SINKLAB_CHECK(x.size(3) % 2 == 0, ShapeError,
                "rope: x " << shape_str(x.shape()) << " has an odd head size HS = " << x.size(3),
                "rotate_half pairs dim i with i + HS/2: use an even head size");
  SINKLAB_CHECK(std::isfinite(theta) && theta > 0, ValueError,
                "rope: theta " << theta << " must be a positive finite base",
                "the usual base is 10000");
  check_contiguous(x, "rope", "x");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());  // (B, T, NH, HS)
  rope_kernels.forward(x.device())(x, theta, position_offset, out);
  autograd::record(out, "rope", {x}, [theta, position_offset](const Tensor& g) {
    Tensor gx = Tensor::empty(g.shape(), g.dtype(), g.device());  // (B, T, NH, HS)
    rope_kernels.backward(g.device())(g, theta, position_offset, gx);
    return std::vector<Tensor>{gx};
  });
  return out;
}

}  // namespace sinklab::ops
