// Sets a process-wide setting for a scope and restores the value it had on exit (tests and
// benchmarks that run one op or model under another setting than the trainer's).
#pragma once

namespace sinklab {

template <class T>
class ScopedValue {
 public:
  ScopedValue(T& target, T value) : target_(target), before_(target) { target_ = value; }
  ~ScopedValue() { target_ = before_; }
  ScopedValue(const ScopedValue&) = delete;
  ScopedValue& operator=(const ScopedValue&) = delete;

 private:
  T& target_;
  T before_;
};

}  // namespace sinklab
