#include "core/peer_failure.h"

#include <atomic>
#include <mutex>

namespace sinklab {

namespace {
std::atomic<bool> g_failed{false};  // read on every poll of a waiting collective
std::mutex g_mutex;                 // guards g_what
std::string g_what;
}  // namespace

void report_peer_failure(const std::string& what) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_failed.load()) return;
  g_what = what;
  g_failed.store(true);
}

std::optional<std::string> peer_failure() {
  if (!g_failed.load()) return std::nullopt;
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_what;
}

void clear_peer_failure() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_failed.store(false);
  g_what.clear();
}

}  // namespace sinklab
