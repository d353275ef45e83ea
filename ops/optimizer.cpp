#include "ops/optimizer.h"

#include "ops/cpu/optimizer.h"

namespace sinklab::ops {

UpdateKernels<AdamWUpdateFn> adamw_update_kernels{"adamw_update", cpu::adamw_update};
UpdateKernels<SumOfSquaresFn> sum_of_squares_kernels{"sum_of_squares", cpu::sum_of_squares};
UpdateKernels<ScaleInPlaceFn> scale_in_place_kernels{"scale_in_place", cpu::scale_in_place};

namespace {
void check_f32(const Tensor& t, const char* op, const char* arg, Device device, int64_t n) {
  check_defined(t, op, arg);
  check_contiguous(t, op, arg);
  SINKLAB_CHECK(t.dtype() == DType::F32 && t.device() == device && t.numel() == n, ValueError,
                op << ": " << arg << " is " << t.str() << ", expected (" << n << ") f32 on "
                   << device.str(),
                "pass the flat f32 buffers (or one shard of each) of one ParameterSet");
}
}  // namespace

void adamw_update(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                  const AdamWHyper& h) {
  const Device device = w.device();
  const int64_t n = w.numel();
  for (const auto& [t, arg] : {std::pair<const Tensor*, const char*>{&w, "w"}, {&g, "g"},
                               {&m, "m"}, {&v, "v"}})
    check_f32(*t, "adamw_update", arg, device, n);
  check_defined(decay_mask, "adamw_update", "decay_mask");
  SINKLAB_CHECK(decay_mask.dtype() == DType::I32 && decay_mask.device() == device &&
                    decay_mask.numel() == n,
                ValueError, "adamw_update: decay_mask is " << decay_mask.str() << ", expected ("
                                                          << n << ") i32 on " << device.str(),
                "one 0/1 entry per element of the shard");
  if (n == 0) return;
  adamw_update_kernels.kernel(device)(w, g, m, v, decay_mask, h);
}

double sum_of_squares(const Tensor& x) {
  check_f32(x, "sum_of_squares", "x", x.device(), x.numel());
  return sum_of_squares_kernels.kernel(x.device())(x);
}

void scale_in_place(Tensor& x, double factor) {
  check_f32(x, "scale_in_place", "x", x.device(), x.numel());
  if (x.numel() == 0) return;
  scale_in_place_kernels.kernel(x.device())(x, static_cast<float>(factor));
}

}  // namespace sinklab::ops
