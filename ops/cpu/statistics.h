// CPU reference kernels of the statistics probes (see ops/statistics.h); sums in double.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace sinklab::cpu {

// x contiguous (R, D) in memory (any leading shape), out (R, 5): mean, variance, l2 norm,
// mean |x|, max |x|.
void row_statistics(const Tensor& x, Tensor& out);
// out (K): the ranks[k]-th smallest |x| over all elements of contiguous x.
void abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out);
// Both of the above, one after the other: rows (R, 5), order (K).
void rows_and_abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks,
                                   Tensor& rows, Tensor& order);
// group_rows contiguous (R, G, 5) in memory (any leading shape), out (R): per row, the mean over
// g of the variances plus the variance over g of the means (ops::pooled_variance).
void pooled_variance(const Tensor& group_rows, Tensor& out);

}  // namespace sinklab::cpu
