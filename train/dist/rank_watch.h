// Names a dead rank at once. NCCL between GPUs has no way to tell that a peer's process ended: a
// collective with a dead peer just never finishes, and each rank could only give up after
// run.collective_timeout_s, unable to say which rank was lost. So every rank keeps the TCP
// connection over which it fetched the NCCL id from rank 0 (train/dist/bootstrap.h) open for the
// whole job, and a thread watches it:
//
//   rank 0 watches every other rank's connection. When one closes without a goodbye (its
//     process ended: killed, crashed, or failed with an error), rank 0 records "rank r died"
//     and tells every other rank which one it was.
//   every other rank watches its connection to rank 0: a notice names the dead rank, and a
//     close without a goodbye means rank 0 itself died.
//
// What a watch learns goes to `on_failure` (by default core/peer_failure.h, which a waiting NCCL
// collective polls: it then aborts and fails naming the dead rank). A rank that ends cleanly
// says goodbye when its watch is destroyed; one that is unwinding from an error does not, so
// its peers learn that it failed. With SINKLAB_ID_FILE (no connection to rank 0) there is no
// watch, and the timeout is what ends the other ranks.
#pragma once
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "train/dist/launcher.h"
#include "train/dist/socket.h"

namespace sinklab::train {

class RankWatch {
 public:
  using FailureSink = std::function<void(const std::string& what)>;
  // peers: on rank 0, the connection to rank r at index r (index 0 unused); on another rank,
  // one connection, to rank 0.
  RankWatch(const LaunchEnv& env, std::vector<Socket> peers, FailureSink on_failure = {});
  ~RankWatch();  // says goodbye unless an exception is unwinding, then stops the thread
  RankWatch(const RankWatch&) = delete;
  RankWatch& operator=(const RankWatch&) = delete;

 private:
  void watch_as_root();
  void watch_rank_0();
  void fail(const std::string& what);

  LaunchEnv env_;
  std::vector<Socket> peers_;
  FailureSink on_failure_;
  int stop_pipe_[2] = {-1, -1};  // the destructor writes to [1]; the thread polls [0]
  std::thread thread_;
};

}  // namespace sinklab::train
