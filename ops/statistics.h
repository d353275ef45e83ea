// Statistics probes for the sink metrics: reductions that turn a large activation into a few
// numbers on the tensor's own device, so that only those numbers travel to the host. No
// gradient (probes, like attention_key_mass); f32 or f64 input, output in the input's dtype,
// sums accumulated in double on the CPU and in fp32/f64 (f32/f64 input) on the GPU. On a GPU
// the input may also be bf16 (GPT-2's FFN hidden under bf16): the output is then f32, sums in
// f32, and the order statistics exact (radix select on the 16-bit keys).
//
//   row_statistics(x): x (..., D) contiguous, viewed as R = numel / D rows of D, or any 2-D
//     (R, D) view (a transpose, a selected column of a larger tensor: no copy needed)
//     -> (R, 5): [mean, variance (population, over D), l2 norm, mean |x|, max |x|] of every row.
//   abs_order_statistics(x, ranks): x any shape, contiguous, N elements
//     -> (K) for K = ranks.size(): out[i] = the ranks[i]-th smallest of |x| (0-based, so rank
//        N / 2 is the upper median and N - 1 the maximum). Exact (a radix select on the bits of
//        |x| on the GPU, nth_element on the CPU). NaN sorts above +inf.
//   rows_and_abs_order_statistics(x, ranks): x (..., D) contiguous -> {row_statistics(x),
//     abs_order_statistics(x, ranks)} (the same order statistics; the row statistics to
//     summation order), with one read of x fewer where the
//     device can (a large f32 x on a GPU: the row statistics come out of the order statistics'
//     first pass). The sink metrics ask both of the residual stream.
//   pooled_variance(group_rows): group_rows (..., G, 5) contiguous, the row statistics of the G
//     equal-sized groups that make up each row (columns RowStatistic) -> (...) the variance
//     (population) of the whole row: the mean of the groups' variances plus the variance of
//     their means (the law of total variance). The sink metrics pool head-wise RMSNorm's
//     per-head statistics into each position's variance over C (ops::NormRowStatistics).
#pragma once
#include <cstdint>
#include <vector>

#include "core/scoped_value.h"
#include "core/tensor.h"
#include "ops/op_table.h"

namespace sinklab::ops {

// Columns of row_statistics' result.
enum RowStatistic : int { kRowMean = 0, kRowVariance, kRowNorm, kRowMeanAbs, kRowMaxAbs, kRowStats };

Tensor row_statistics(const Tensor& x);

// How row_statistics' kernels walk x: R rows of D, element (r, d) at r * row_stride +
// d * col_stride from x's first element.
struct RowLayout {
  int64_t R, D, row_stride, col_stride;
};
RowLayout row_layout(const Tensor& x);
Tensor abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks);

struct RowsAndOrder {
  Tensor rows;   // (R, 5), columns RowStatistic
  Tensor order;  // (K)
};
RowsAndOrder rows_and_abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks);
Tensor pooled_variance(const Tensor& group_rows);

// How rows_and_abs_order_statistics reads a large f32 x on a GPU (run.one_pass_order_statistics):
// false, the row statistics with a histogram of every key's top 16 bits, then the low 16 bits
// under each rank's (two reads of x); true, the row statistics with a partition of the keys by
// brackets around each rank's sampled quantile (one read of x), then the select over the few
// candidates (x again only where a rank fell outside its bracket). The same values either way.
// Read at each call; the trainer sets it once from the config. Off by default: on an H100 the
// sample's sort and the select's passes over the candidates took 140 us a GPT-2 layer against
// 111 for the two passes (eighteenth session's profiles, docs/PERFORMANCE.md).
extern bool one_pass_order_statistics;

// Sets one_pass_order_statistics for a scope (tests, benchmarks).
class OnePassOrderStatisticsGuard : ScopedValue<bool> {
 public:
  explicit OnePassOrderStatisticsGuard(bool on) : ScopedValue(one_pass_order_statistics, on) {}
};

using RowStatisticsFn = void (*)(const Tensor& x, Tensor& out);
using AbsOrderStatisticsFn = void (*)(const Tensor& x, const std::vector<int64_t>& ranks,
                                      Tensor& out);
using RowsAndOrderFn = void (*)(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& rows,
                                Tensor& order);
using PooledVarianceFn = void (*)(const Tensor& group_rows, Tensor& out);  // out (R) for R rows
// Probes: the backward slots stay null.
extern OpKernels<RowStatisticsFn, RowStatisticsFn> row_statistics_kernels;
extern OpKernels<AbsOrderStatisticsFn, AbsOrderStatisticsFn> abs_order_statistics_kernels;
extern OpKernels<RowsAndOrderFn, RowsAndOrderFn> rows_and_abs_order_statistics_kernels;
extern OpKernels<PooledVarianceFn, PooledVarianceFn> pooled_variance_kernels;

}  // namespace sinklab::ops
