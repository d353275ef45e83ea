#include "ops/op_list.h"

#include "core/error.h"

namespace sinklab::ops {

namespace {

void require_slot(bool filled, bool claimed, const char* op, const char* slot) {
  SINKLAB_CHECK(filled == claimed, InternalError,
                "op " << op << ": its CUDA " << slot << " is "
                      << (filled ? "installed" : "not installed") << " but ops/op_list.h says "
                      << (claimed ? "cuda/ fills it" : "it has none"),
                "install the kernel in the op's cuda/*.cu install_* function, or correct the "
                "op's cuda column in ops/op_list.h");
}

template <class Forward, class Backward>
void check_row(const OpKernels<Forward, Backward>& row, OpCuda claimed) {
  require_slot(row.cuda_forward != nullptr, claimed != OpCuda::None, row.name, "forward");
  require_slot(row.cuda_backward != nullptr, claimed == OpCuda::Both, row.name, "backward");
}

template <class Fn>
void check_row(const UpdateKernels<Fn>& row, OpCuda claimed) {
  require_slot(row.cuda != nullptr, claimed != OpCuda::None, row.name, "kernel");
}

}  // namespace

void check_cuda_slots() {
#define SINKLAB_CHECK_OP(name, grad, cuda) check_row(name##_kernels, OpCuda::cuda);
  SINKLAB_OPS(SINKLAB_CHECK_OP)
#undef SINKLAB_CHECK_OP
}

}  // namespace sinklab::ops
