// A process-wide note that another rank of a multi-process job has died, for the code that
// waits on that rank without a connection of its own to notice it (an NCCL collective between
// GPUs, cuda/communicator.h). The rank watch (train/dist/rank_watch.h) sets it from its thread
// the moment a peer's connection closes without a goodbye; a waiting collective reads it, gives
// up, and names the dead rank instead of waiting out run.collective_timeout_s.
#pragma once
#include <optional>
#include <string>

namespace sinklab {

// Records the first failure (later ones are dropped): e.g. "rank 7 died (...)". Thread-safe.
void report_peer_failure(const std::string& what);
// The recorded failure, if any. Thread-safe and cheap when there is none.
std::optional<std::string> peer_failure();
// Forgets it (tests).
void clear_peer_failure();

}  // namespace sinklab
