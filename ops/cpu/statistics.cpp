#include "ops/cpu/statistics.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "ops/statistics.h"

namespace sinklab::cpu {

void row_statistics(const Tensor& x, Tensor& out) {
  const ops::RowLayout L = ops::row_layout(x);  // x (R, D), any row and column strides
  const int64_t R = L.R, D = L.D;
  dispatch_float(x.dtype(), "row_statistics", [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* o = out.data<T>();
    parallel_for(R, [&](int64_t r) {
      const T* row = in + r * L.row_stride;  // (D), col_stride apart
      auto at = [&](int64_t d) { return static_cast<double>(row[d * L.col_stride]); };
      double sum = 0, sq = 0;
      for (int64_t d = 0; d < D; ++d) sum += at(d);
      const double mean = sum / static_cast<double>(D);
      for (int64_t d = 0; d < D; ++d) {
        const double c = at(d) - mean;
        sq += c * c;
      }
      double norm = 0, sum_abs = 0, max_abs = 0;
      for (int64_t d = 0; d < D; ++d) {
        const double v = at(d);
        norm += v * v;
        sum_abs += std::fabs(v);
        max_abs = std::max(max_abs, std::fabs(v));
      }
      T* out_row = o + r * 5;  // (5)
      out_row[0] = static_cast<T>(mean);
      out_row[1] = static_cast<T>(sq / static_cast<double>(D));
      out_row[2] = static_cast<T>(std::sqrt(norm));
      out_row[3] = static_cast<T>(sum_abs / static_cast<double>(D));
      out_row[4] = static_cast<T>(max_abs);
    });
  });
}

void abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks, Tensor& out) {
  dispatch_float(x.dtype(), "abs_order_statistics", [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    std::vector<double> values(static_cast<size_t>(x.numel()));  // (N): |x|
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::fabs(static_cast<double>(in[i]));
    // NaN sorts above +inf, as in the bit-pattern order the GPU kernel uses.
    const auto nan_last = [](double a, double b) {
      return std::isnan(a) ? false : (std::isnan(b) ? true : a < b);
    };
    T* o = out.data<T>();
    for (size_t k = 0; k < ranks.size(); ++k) {
      std::nth_element(values.begin(), values.begin() + ranks[k], values.end(), nan_last);
      o[k] = static_cast<T>(values[static_cast<size_t>(ranks[k])]);
    }
  });
}

void rows_and_abs_order_statistics(const Tensor& x, const std::vector<int64_t>& ranks,
                                   Tensor& rows, Tensor& order) {
  row_statistics(x, rows);
  abs_order_statistics(x, ranks, order);
}

void pooled_variance(const Tensor& group_rows, Tensor& out) {
  const int64_t G = group_rows.size(-2), R = out.numel();
  dispatch_float(group_rows.dtype(), "pooled_variance", [&](auto zero) {
    using T = decltype(zero);
    const T* in = group_rows.data<T>();  // (R, G, 5)
    T* o = out.data<T>();                // (R)
    parallel_for(R, [&](int64_t r) {
      const T* groups = in + r * G * ops::kRowStats;  // (G, 5)
      double mean = 0, within = 0;
      for (int64_t g = 0; g < G; ++g) {
        mean += static_cast<double>(groups[g * ops::kRowStats + ops::kRowMean]);
        within += static_cast<double>(groups[g * ops::kRowStats + ops::kRowVariance]);
      }
      mean /= static_cast<double>(G);
      double between = 0;
      for (int64_t g = 0; g < G; ++g) {
        const double c = static_cast<double>(groups[g * ops::kRowStats + ops::kRowMean]) - mean;
        between += c * c;
      }
      o[r] = static_cast<T>((within + between) / static_cast<double>(G));
    });
  });
}

}  // namespace sinklab::cpu
