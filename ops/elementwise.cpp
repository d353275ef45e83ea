#include "ops/elementwise.h"

#include "autograd/node.h"
#include "ops/cpu/elementwise.h"

namespace sinklab::ops {

OpKernels<BinaryForwardFn, SumLeadingFn> add_kernels{"add", cpu::add_forward, cpu::sum_leading};
OpKernels<BinaryForwardFn, SumLeadingFn> mul_kernels{"mul", cpu::mul_forward, cpu::sum_leading};
OpKernels<ScaleForwardFn, ScaleForwardFn> scale_kernels{"scale", cpu::scale_forward,
                                                        cpu::scale_forward};

namespace {

void check_broadcast(const Tensor& a, const Tensor& b, const char* op) {
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  check_same_device(a, b, op);
  check_same_dtype(a, b, op);
  check_contiguous(a, op, "a");
  check_contiguous(b, op, "b");
  SINKLAB_CHECK(is_trailing_suffix(a.shape(), b.shape()), ShapeError,
                op << ": cannot broadcast b " << shape_str(b.shape()) << " over a "
                   << shape_str(a.shape()),
                "b's shape must equal a's shape or its trailing dims, e.g. (B, T, C) with (C,)");
}

// Gradient of the broadcast operand: sum over a's leading dims (identity when shapes match).
Tensor reduce_to(const Tensor& full, const Tensor* times, const Tensor& like,
                 const OpKernels<BinaryForwardFn, SumLeadingFn>& kernels) {
  Tensor out = Tensor::empty(like.shape(), like.dtype(), like.device());
  kernels.backward(like.device())(full, times, out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_broadcast(a, b, "add");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  add_kernels.forward(a.device())(a, b, out);
  const bool same = a.shape() == b.shape();
  autograd::record(out, "add", {a, b}, [b = b.detach(), same](const Tensor& g) {
    Tensor gb = same ? g : reduce_to(g, nullptr, b, add_kernels);
    return std::vector<Tensor>{g, gb};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_broadcast(a, b, "mul");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  mul_kernels.forward(a.device())(a, b, out);
  autograd::record(out, "mul", {a, b},
                   [a = a.detach(), b = b.detach(), ra = a.requires_grad(),
                    rb = b.requires_grad()](const Tensor& g) {
                     Tensor ga, gb;
                     if (ra) {
                       ga = Tensor::empty(a.shape(), a.dtype(), a.device());
                       mul_kernels.forward(a.device())(g, b, ga);
                     }
                     if (rb) {
                       if (a.shape() == b.shape()) {
                         gb = Tensor::empty(b.shape(), b.dtype(), b.device());
                         mul_kernels.forward(b.device())(g, a, gb);
                       } else {
                         gb = reduce_to(g, &a, b, mul_kernels);
                       }
                     }
                     return std::vector<Tensor>{ga, gb};
                   });
  return out;
}

Tensor scale(const Tensor& a, double s) {
  check_defined(a, "scale", "a");
  check_contiguous(a, "scale", "a");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  scale_kernels.forward(a.device())(a, s, out);
  autograd::record(out, "scale", {a}, [s](const Tensor& g) {
    Tensor ga = Tensor::empty(g.shape(), g.dtype(), g.device());
    scale_kernels.backward(g.device())(g, s, ga);
    return std::vector<Tensor>{ga};
  });
  return out;
}

}  // namespace sinklab::ops
