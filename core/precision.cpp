#include "core/precision.h"

#include <atomic>

namespace sinklab {

namespace {
std::atomic<Precision> g_precision{Precision::Exact};
}

Precision cuda_precision() { return g_precision.load(std::memory_order_relaxed); }
void set_cuda_precision(Precision precision) {
  g_precision.store(precision, std::memory_order_relaxed);
}

}  // namespace sinklab
