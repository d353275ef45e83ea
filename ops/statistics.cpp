#include "ops/statistics.h"

#include "ops/cpu/statistics.h"

namespace sinklab::ops {

OpKernels<RowStatisticsFn, RowStatisticsFn> row_statistics_kernels{
    "row_statistics", cpu::row_statistics, nullptr};
OpKernels<AbsOrderStatisticsFn, AbsOrderStatisticsFn> abs_order_statistics_kernels{
    "abs_order_statistics", cpu::abs_order_statistics, nullptr};

namespace {
// f32 or f64 like x; f32 for a bf16 x (its values are exact in f32).
DType result_dtype(const Tensor& x) { return x.dtype() == DType::BF16 ? DType::F32 : x.dtype(); }
}  // namespace

RowLayout row_layout(const Tensor& x) {
  if (x.dim() == 2 && !x.is_contiguous())
    return {x.size(0), x.size(1), x.strides()[0], x.strides()[1]};
  const int64_t D = x.size(-1);
  return {x.numel() / D, D, D, 1};
}

Tensor row_statistics(const Tensor& x) {
  check_float_storage(x, "row_statistics", "x");
  if (x.dim() != 2) check_contiguous(x, "row_statistics", "x");
  SINKLAB_CHECK(x.dim() >= 1 && x.size(-1) > 0, ShapeError,
                "row_statistics: x " << shape_str(x.shape()) << " has no rows to reduce",
                "pass a tensor whose last dimension is at least 1");
  const int64_t R = x.numel() / x.size(-1);
  Tensor out = Tensor::empty({R, kRowStats}, result_dtype(x), x.device());  // (R, 5), RowStatistic
  if (R > 0) row_statistics_kernels.forward(x.device())(x, out);
  return out;
}

Tensor abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks) {
  check_float_storage(x, "abs_order_statistics", "x");
  check_contiguous(x, "abs_order_statistics", "x");
  for (int64_t r : ranks)
    SINKLAB_CHECK(r >= 0 && r < x.numel(), ShapeError,
                  "abs_order_statistics: rank " << r << " is outside x " << shape_str(x.shape())
                                                << " (" << x.numel() << " elements)",
                  "ranks count from 0 (the smallest |x|) to numel - 1 (the largest)");
  Tensor out = Tensor::empty({static_cast<int64_t>(ranks.size())}, result_dtype(x),
                             x.device());  // (K)
  if (!ranks.empty()) abs_order_statistics_kernels.forward(x.device())(x, ranks, out);
  return out;
}

}  // namespace sinklab::ops
