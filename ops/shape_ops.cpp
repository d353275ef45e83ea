#include "ops/shape_ops.h"

#include "autograd/node.h"

namespace sinklab::ops {

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_defined(x, "reshape", "x");
  Tensor src = contiguous(x);
  Tensor out = src.reshape_view(shape);
  autograd::record(out, "reshape", {src}, [in_shape = src.shape()](const Tensor& g) {
    return std::vector<Tensor>{g.contiguous_or_self().reshape_view(in_shape)};
  });
  return out;
}

Tensor transpose(const Tensor& x, int d0, int d1) {
  check_defined(x, "transpose", "x");
  Tensor out = x.transpose_view(d0, d1);
  autograd::record(out, "transpose", {x}, [d0, d1](const Tensor& g) {
    return std::vector<Tensor>{g.transpose_view(d0, d1).copy_contiguous()};
  });
  return out;
}

Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length) {
  check_defined(x, "narrow", "x");
  Tensor out = x.narrow_view(dim, start, length);
  autograd::record(out, "narrow", {x},
                   [x = x.detach(), dim, start, length](const Tensor& g) {
                     Tensor gx = Tensor::zeros(x.shape(), g.dtype(), g.device());
                     Tensor window = gx.narrow_view(dim, start, length);
                     window.copy_from(g);
                     return std::vector<Tensor>{gx};
                   });
  return out;
}

Tensor contiguous(const Tensor& x) {
  check_defined(x, "contiguous", "x");
  if (x.is_contiguous()) return x;
  Tensor out = x.copy_contiguous();
  autograd::record(out, "contiguous", {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  check_defined(x, "to_dtype", "x");
  if (x.dtype() == dtype) return x;
  Tensor out = x.to_dtype(dtype);
  autograd::record(out, "to_dtype", {x}, [from = x.dtype()](const Tensor& g) {
    return std::vector<Tensor>{g.to_dtype(from)};
  });
  return out;
}

}  // namespace sinklab::ops
