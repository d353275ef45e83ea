#include "train/phase_clock.h"

#include "core/device_runtime.h"

namespace sinklab::train {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

PhaseClock::PhaseClock(bool enabled, std::map<std::string, double>& totals, Device device)
    : enabled_(enabled), totals_(totals), device_(device), last_(Clock::now()) {}

void PhaseClock::mark(const char* phase) {
  if (!enabled_) return;
  device_runtime(device_).synchronize();
  const auto now = Clock::now();
  totals_[phase] += 1000.0 * std::chrono::duration<double>(now - last_).count();
  last_ = now;
}

}  // namespace sinklab::train
