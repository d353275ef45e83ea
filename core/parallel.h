// CPU parallelism: OpenMP when available, serial otherwise. Kernels call parallel_for.
#pragma once
#include <cstdint>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace sinklab {

inline int cpu_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// fn(i) for i in [0, n), split statically over threads when the work is large enough; serial
// inside another parallel_for (e.g. a product inside one attention head's task).
template <class Fn>
void parallel_for(int64_t n, Fn fn, int64_t min_per_thread = 1) {
#if defined(_OPENMP)
  if (n >= 2 * min_per_thread && cpu_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#endif
  (void)min_per_thread;
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace sinklab
