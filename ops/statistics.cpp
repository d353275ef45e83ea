#include "ops/statistics.h"

#include "ops/cpu/statistics.h"

namespace sinklab::ops {

bool one_pass_order_statistics = false;

OpKernels<RowStatisticsFn, RowStatisticsFn> row_statistics_kernels{
    "row_statistics", cpu::row_statistics, nullptr};
OpKernels<AbsOrderStatisticsFn, AbsOrderStatisticsFn> abs_order_statistics_kernels{
    "abs_order_statistics", cpu::abs_order_statistics, nullptr};
OpKernels<RowsAndOrderFn, RowsAndOrderFn> rows_and_abs_order_statistics_kernels{
    "rows_and_abs_order_statistics", cpu::rows_and_abs_order_statistics, nullptr};
OpKernels<PooledVarianceFn, PooledVarianceFn> pooled_variance_kernels{
    "pooled_variance", cpu::pooled_variance, nullptr};

namespace {
// f32 or f64 like x; f32 for a bf16 x (its values are exact in f32).
DType result_dtype(const Tensor& x) { return x.dtype() == DType::BF16 ? DType::F32 : x.dtype(); }

void check_rows(const Tensor& x, const char* op) {
  SINKLAB_CHECK(x.dim() >= 1 && x.size(-1) > 0, ShapeError,
                op << ": x " << shape_str(x.shape()) << " has no rows to reduce",
                "pass a tensor whose last dimension is at least 1");
}

void check_ranks(const Tensor& x, const std::vector<int64_t>& ranks, const char* op) {
  for (int64_t r : ranks)
    SINKLAB_CHECK(r >= 0 && r < x.numel(), ShapeError,
                  op << ": rank " << r << " is outside x " << shape_str(x.shape()) << " ("
                     << x.numel() << " elements)",
                  "ranks count from 0 (the smallest |x|) to numel - 1 (the largest)");
}
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
  check_rows(x, "row_statistics");
  const int64_t R = x.numel() / x.size(-1);
  Tensor out = Tensor::empty({R, kRowStats}, result_dtype(x), x.device());  // (R, 5), RowStatistic
  if (R > 0) row_statistics_kernels.forward(x.device())(x, out);
  return out;
}

Tensor abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks) {
  check_float_storage(x, "abs_order_statistics", "x");
  check_contiguous(x, "abs_order_statistics", "x");
  check_ranks(x, ranks, "abs_order_statistics");
  Tensor out = Tensor::empty({static_cast<int64_t>(ranks.size())}, result_dtype(x),
                             x.device());  // (K)
  if (!ranks.empty()) abs_order_statistics_kernels.forward(x.device())(x, ranks, out);
  return out;
}

RowsAndOrder rows_and_abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks) {
  const char* op = "rows_and_abs_order_statistics";
  check_float_storage(x, op, "x");
  check_contiguous(x, op, "x");
  check_rows(x, op);
  check_ranks(x, ranks, op);
  RowsAndOrder out;
  out.rows = Tensor::empty({x.numel() / x.size(-1), kRowStats}, result_dtype(x),
                           x.device());  // (R, 5), RowStatistic
  out.order = Tensor::empty({static_cast<int64_t>(ranks.size())}, result_dtype(x),
                            x.device());  // (K)
  if (x.numel() > 0) rows_and_abs_order_statistics_kernels.forward(x.device())(x, ranks, out.rows,
                                                                              out.order);
  return out;
}

Tensor pooled_variance(const Tensor& group_rows) {
  const char* op = "pooled_variance";
  check_float(group_rows, op, "group_rows");
  check_contiguous(group_rows, op, "group_rows");
  SINKLAB_CHECK(group_rows.dim() >= 2 && group_rows.size(-1) == kRowStats &&
                    group_rows.size(-2) > 0,
                ShapeError,
                op << ": group_rows " << shape_str(group_rows.shape())
                   << " is not (..., G, 5) with G >= 1",
                "pass the row statistics of each row's groups, e.g. (B, T, NH, 5) per head");
  Shape shape(group_rows.shape().begin(), group_rows.shape().end() - 2);  // (...)
  Tensor out = Tensor::empty(shape, group_rows.dtype(), group_rows.device());  // (...)
  if (out.numel() > 0) pooled_variance_kernels.forward(group_rows.device())(group_rows, out);
  return out;
}

}  // namespace sinklab::ops
