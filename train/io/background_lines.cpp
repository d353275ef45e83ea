#include "train/io/background_lines.h"

#include <cstdio>
#include <utility>

#include "core/error.h"

namespace sinklab::train {

BackgroundLines::BackgroundLines(std::ofstream& out, std::string path)
    : out_(out), path_(std::move(path)), thread_([this] { run(); }) {}

BackgroundLines::~BackgroundLines() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_.notify_one();
  thread_.join();  // the thread writes what is queued before it stops
  if (error_) {
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sinklab: writing %s failed: %s\n", path_.c_str(), e.what());
    }
  }
}

void BackgroundLines::rethrow_error() {
  if (!error_) return;
  std::exception_ptr error = std::exchange(error_, nullptr);
  std::rethrow_exception(error);
}

void BackgroundLines::append(std::function<std::string()> make_line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    rethrow_error();
    queue_.push_back(std::move(make_line));
  }
  work_.notify_one();
}

void BackgroundLines::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return queue_.empty() && !writing_; });
  rethrow_error();
  SINKLAB_CHECK(out_.good(), IOError, "cannot write " << path_, "check the disk's free space");
}

void BackgroundLines::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, and nothing left to write
    std::function<std::string()> make_line = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    std::exception_ptr failed;
    try {
      const std::string line = make_line();
      out_ << line << '\n';
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    writing_ = false;
    if (failed && !error_) error_ = failed;
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace sinklab::train
