// Collectives between CPU processes over TCP, for data-parallel training on run.device: cpu
// (and for testing the data-parallel trainer on machines without GPUs).
//
// Star topology through rank 0: at construction rank 0 listens on LaunchEnv::id_port
// (SINKLAB_ID_PORT, default MASTER_PORT + 1) and every other rank connects to master_addr:id_port
// and names itself. A reduction sends each rank's buffer to rank 0, which adds them in rank
// order (0, 1, 2, ...: the same bits on every run) and sends the result back; an all-gather
// concatenates in rank order the same way. Messages carry a header (operation, element count)
// so that ranks calling different operations fail with a message instead of corrupt data.
// A rank that dies closes its connection: rank 0 fails with an IOError naming it, and first
// tells every other rank which one it lost, so that they fail naming it too. A rank that stops
// answering fails the others after timeout_s seconds (run.collective_timeout_s).
// Started reductions (start_all_reduce_mean) run in order on a worker thread, while the caller
// goes on with backward; wait_started() rethrows the worker's error, if any.
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "train/dist/collective.h"
#include "train/dist/launcher.h"
#include "train/dist/socket.h"

namespace sinklab::train {

class TcpCollective : public Collective {
 public:
  // Connects the ranks of env (world size > 1); throws IOError naming the address and port
  // when they do not all connect within timeout_s seconds, the limit of every wait after.
  TcpCollective(const LaunchEnv& env, double timeout_s);
  ~TcpCollective() override;

  void all_reduce_mean(Tensor& t, const char* what) override;
  double sum(double value, const char* what) override;
  std::vector<double> all_gather(const std::vector<double>& mine, const char* what) override;
  void all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds,
                         const char* what) override;
  void start_all_reduce_mean(Tensor& t, const char* what) override;
  void wait_started(const char* what) override;

 private:
  void work();  // the worker thread: runs started reductions in order
  void reduce_now(Tensor& t, const char* what);  // all_reduce_mean without waiting
  // Rank 0: every rank's `bytes` (its own first) in rank order. Others: sends theirs, returns {}.
  std::vector<std::vector<char>> gather_at_root(const void* data, size_t bytes, int op,
                                                const char* what);
  // Rank 0 sends `bytes` to every other rank; the others receive them into data.
  void broadcast_from_root(void* data, size_t bytes, int op, const char* what);
  // Rank 0: `ok`, the outcome of an exchange with rank r. When it failed, first tells every
  // other rank (best effort) that r is lost, so that their wait for the result fails naming it.
  bool reached(int r, bool ok);

  LaunchEnv env_;
  double timeout_s_;
  std::vector<Socket> peers_;  // rank 0: peers_[r] is rank r (r >= 1); others: peers_[0] = rank 0

  struct Job {
    Tensor t;
    const char* what;
  };
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> jobs_;        // started, not yet run
  bool busy_ = false;           // the worker is running a job
  bool stopping_ = false;
  std::exception_ptr failure_;  // the worker's first error
  std::thread worker_;
};

}  // namespace sinklab::train
