#include "ops/rope.h"

#include <atomic>
#include <cmath>

#include "autograd/node.h"
#include "ops/cpu/rope.h"

namespace sinklab::ops {

OpKernels<RopeFn, RopeFn> rope_kernels{"rope", cpu::rope_forward, cpu::rope_backward};
OpKernels<RopeQkvFn, RopeQkvFn> rope_qkv_kernels{"rope_qkv", cpu::rope_qkv_forward,
                                                 cpu::rope_qkv_backward};

bool rope_in_place = false;

namespace {

std::atomic<int64_t> g_in_place{0};  // rope_rotations_in_place()

// Where rope_qkv writes the rotation of t (qkv, or the gradient in backward): over t itself
// when in_place is asked and t is contiguous with its storage held by t's handle alone (its old
// values cannot be read again; counted for rope_rotations_in_place), else a new tensor of t's
// shape.
Tensor rotation_output(const Tensor& t, bool in_place) {
  if (in_place && t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 &&
      t.is_contiguous()) {
    g_in_place.fetch_add(1, std::memory_order_relaxed);
    return t.detach();
  }
  return Tensor::empty(t.shape(), t.dtype(), t.device());
}

void check_theta(double theta, const char* op) {
  SINKLAB_CHECK(std::isfinite(theta) && theta > 0, ValueError,
                op << ": theta " << theta << " must be a positive finite base",
                "the usual base is 10000");
}

}  // namespace

int64_t rope_rotations_in_place() { return g_in_place.load(std::memory_order_relaxed); }

Tensor rope(const Tensor& x, double theta, int64_t position_offset) {
  check_defined(x, "rope", "x");
  check_float(x, "rope", "x");
  SINKLAB_CHECK(x.dim() == 4, ShapeError,
                "rope: x " << shape_str(x.shape()) << " must be (B, T, NH, HS)",
                "split the heads first: (B, T, C) -> (B, T, NH, HS) with reshape");
  SINKLAB_CHECK(x.size(3) % 2 == 0, ShapeError,
                "rope: x " << shape_str(x.shape()) << " has an odd head size HS = " << x.size(3),
                "rotate_half pairs dim i with i + HS/2: use an even head size");
  check_theta(theta, "rope");
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

Tensor rope_qkv(Tensor qkv, int64_t n_head, double theta, int64_t position_offset) {
  const char* op = "rope_qkv";
  check_float_storage(qkv, op, "qkv");
  check_contiguous(qkv, op, "qkv");
  SINKLAB_CHECK(qkv.dim() == 3 && n_head > 0 && qkv.size(2) > 0 &&
                    qkv.size(2) % (3 * n_head) == 0,
                ShapeError, op << ": qkv " << qkv.str() << " with " << n_head << " heads",
                "pass qkv (B, T, 3C) with C = n_head * head size: q, k, v side by side");
  const int64_t HS = qkv.size(2) / (3 * n_head);
  SINKLAB_CHECK(HS % 2 == 0, ShapeError,
                op << ": qkv " << qkv.str() << " with " << n_head
                   << " heads has an odd head size HS = " << HS,
                "rotate_half pairs dim i with i + HS/2: use an even head size");
  check_theta(theta, op);
  const bool in_place = rope_in_place;
  // (B, T, 3C): over qkv's own storage when it was moved in and nothing else holds it
  Tensor out = rotation_output(qkv, in_place);
  rope_qkv_kernels.forward(qkv.device())(qkv, n_head, theta, position_offset, out);
  autograd::record(
      out, op, {qkv},
      [dtype = qkv.dtype(), n_head, theta, position_offset, in_place](const Tensor& g) {
        SINKLAB_CHECK(g.dtype() == dtype, DTypeError,
                      "rope_qkv backward: gradient " << g.str() << " for a " << dtype_name(dtype)
                                                     << " qkv",
                      "the gradient of rope_qkv's output has the output's dtype");
        Tensor gqkv = rotation_output(g, in_place);  // (B, T, 3C): over g when held alone
        rope_qkv_kernels.backward(g.device())(g, n_head, theta, position_offset, gqkv);
        return std::vector<Tensor>{gqkv};
      });
  return out;
}

}  // namespace sinklab::ops
