#include "ops/optimizer.h"

#include "ops/cpu/optimizer.h"

namespace sinklab::ops {

UpdateKernels<AdamWUpdateFn> adamw_update_kernels{"adamw_update", cpu::adamw_update};
UpdateKernels<SumOfSquaresFn> sum_of_squares_kernels{"sum_of_squares", cpu::sum_of_squares};
UpdateKernels<ScaleInPlaceFn> scale_in_place_kernels{"scale_in_place", cpu::scale_in_place};
UpdateKernels<SumOfSquaresIntoFn> sum_of_squares_into_kernels{"sum_of_squares_into",
                                                              cpu::sum_of_squares_into};
UpdateKernels<AdamWUpdateScheduledFn> adamw_update_scheduled_kernels{"adamw_update_scheduled",
                                                                     cpu::adamw_update_scheduled};

namespace {
void check_f32(const Tensor& t, const char* op, const char* arg, Device device, int64_t n) {
  check_defined(t, op, arg);
  check_contiguous(t, op, arg);
  SINKLAB_CHECK(t.dtype() == DType::F32 && t.device() == device && t.numel() == n, ValueError,
                op << ": " << arg << " is " << t.str() << ", expected (" << n << ") f32 on "
                   << device.str(),
                "pass the flat f32 buffers (or one shard of each) of one ParameterSet");
}

// w, g, m, v (n) f32 and the decay mask (n) i32, all on w's device.
void check_adamw_buffers(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v,
                         const Tensor& decay_mask, const char* op) {
  const Device device = w.device();
  const int64_t n = w.numel();
  for (const auto& [t, arg] : {std::pair<const Tensor*, const char*>{&w, "w"}, {&g, "g"},
                               {&m, "m"}, {&v, "v"}})
    check_f32(*t, op, arg, device, n);
  check_defined(decay_mask, op, "decay_mask");
  SINKLAB_CHECK(decay_mask.dtype() == DType::I32 && decay_mask.device() == device &&
                    decay_mask.numel() == n,
                ValueError, op << ": decay_mask is " << decay_mask.str() << ", expected ("
                               << n << ") i32 on " << device.str(),
                "one 0/1 entry per element of the shard");
}

// A small contiguous device buffer of `n` elements of `dtype` on `device`.
void check_small(const Tensor& t, const char* op, const char* arg, DType dtype, int64_t n,
                 Device device) {
  check_defined(t, op, arg);
  check_contiguous(t, op, arg);
  SINKLAB_CHECK(t.dtype() == dtype && t.device() == device && t.numel() == n, ValueError,
                op << ": " << arg << " is " << t.str() << ", expected (" << n << ") "
                   << dtype_name(dtype) << " on " << device.str(),
                "see ops/optimizer.h for what each buffer holds");
}

}  // namespace

void adamw_update(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& decay_mask,
                  const AdamWHyper& h) {
  check_adamw_buffers(w, g, m, v, decay_mask, "adamw_update");
  if (w.numel() == 0) return;
  adamw_update_kernels.kernel(w.device())(w, g, m, v, decay_mask, h);
}

void adamw_update_scheduled(Tensor& w, const Tensor& g, Tensor& m, Tensor& v,
                            const Tensor& decay_mask, const AdamWConstants& c,
                            const Tensor& schedule, const Tensor& results) {
  const char* op = "adamw_update_scheduled";
  check_adamw_buffers(w, g, m, v, decay_mask, op);
  check_small(schedule, op, "schedule", DType::F32, 3, w.device());
  check_small(results, op, "results", DType::F64, 2, w.device());
  if (w.numel() == 0) return;
  adamw_update_scheduled_kernels.kernel(w.device())(w, g, m, v, decay_mask, c, schedule, results);
}

void sum_of_squares_into(const Tensor& x, Tensor& out) {
  check_f32(x, "sum_of_squares_into", "x", x.device(), x.numel());
  check_small(out, "sum_of_squares_into", "out", DType::F64, 1, x.device());
  sum_of_squares_into_kernels.kernel(x.device())(x, out);
}

double clip_factor(double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  return max_norm / (norm + 1e-6);
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
