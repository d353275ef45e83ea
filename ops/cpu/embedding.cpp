#include "ops/cpu/embedding.h"

#include <string>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"

namespace sinklab::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per thread, at least

// "(1, 4)": the multi-index of flat element `flat` of a row-major `shape`.
std::string index_str(const Shape& shape, int64_t flat) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_str(index);
}
}  // namespace

void embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int32_t* pid = ids.data<int32_t>();  // (N)
  const int64_t N = ids.numel(), V = table.size(0), C = table.size(1);
  for (int64_t n = 0; n < N; ++n)  // serial: an exception must not leave a parallel region
    SINKLAB_CHECK(pid[n] >= 0 && pid[n] < V, ValueError,
                  "embedding: id " << pid[n] << " at position " << index_str(ids.shape(), n)
                                   << " (flat " << n << ") of ids " << shape_str(ids.shape())
                                   << " is outside [0, V) with V = " << V << " (table "
                                   << shape_str(table.shape()) << ")",
                  "token ids must be below the vocabulary size the table was built for");
  dispatch_float(table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    const T* pt = table.data<T>();  // (V, C)
    T* po = out.data<T>();          // (N, C)
    parallel_for(N, [&](int64_t n) {
      const T* row = pt + static_cast<int64_t>(pid[n]) * C;  // (C)
      for (int64_t c = 0; c < C; ++c) po[n * C + c] = row[c];
    }, kGrain / (C + 1) + 1);
  });
}

void embedding_backward(const Tensor& grad, const Tensor& ids, Tensor& grad_table) {
  const int32_t* pid = ids.data<int32_t>();  // (N), validated by the forward
  const int64_t N = ids.numel(), V = grad_table.size(0), C = grad_table.size(1);
  // Stable counting sort: tokens of id v are order[start[v] .. start[v + 1]), ascending.
  std::vector<int64_t> start(V + 1, 0);  // (V + 1)
  for (int64_t n = 0; n < N; ++n) ++start[pid[n] + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(N);     // (N) token indices grouped by id
  std::vector<int64_t> fill(start.begin(), start.end() - 1);  // (V) next free slot per id
  for (int64_t n = 0; n < N; ++n) order[fill[pid[n]]++] = n;
  dispatch_float(grad_table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    const T* pg = grad.data<T>();    // (N, C)
    T* pt = grad_table.data<T>();    // (V, C)
    // Each table row is owned by one thread and sums its tokens in order: no atomics.
    parallel_for(V, [&](int64_t v) {
      T* row = pt + v * C;  // (C)
      if (start[v] == start[v + 1]) {
        for (int64_t c = 0; c < C; ++c) row[c] = T(0);
        return;
      }
      std::vector<double> acc(C, 0.0);  // (C)
      for (int64_t k = start[v]; k < start[v + 1]; ++k) {
        const T* g = pg + order[k] * C;  // (C)
        for (int64_t c = 0; c < C; ++c) acc[c] += g[c];
      }
      for (int64_t c = 0; c < C; ++c) row[c] = static_cast<T>(acc[c]);
    }, 16);
  });
}

}  // namespace sinklab::cpu
