// Wall-clock timing of a command's phases: seconds since a start, and the time between marks
// summed per phase (the trainer's run.profile, the probe's stage line).
#pragma once
#include <chrono>
#include <map>
#include <string>

#include "core/device.h"

namespace sinklab::train {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0);

// Each mark closes the phase that ran since the last mark (or since construction) and adds its
// milliseconds to totals[phase]. The device is synchronised at every mark, so that asynchronous
// GPU work counts in the phase that launched it. Disabled, mark does nothing (and costs no
// synchronisation).
class PhaseClock {
 public:
  PhaseClock(bool enabled, std::map<std::string, double>& totals, Device device);
  void mark(const char* phase);

 private:
  bool enabled_;
  std::map<std::string, double>& totals_;
  Device device_;
  Clock::time_point last_;
};

}  // namespace sinklab::train
