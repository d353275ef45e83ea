// NCCL communicator of a data-parallel job: one process per GPU, every rank's compute stream.
// Built when NCCL is found (SINKLAB_HAVE_NCCL); the trainer refuses world sizes > 1 otherwise.
//
// Collectives are enqueued on the compute stream (cuda/runtime.h stream()), then waited for with
// a watchdog: the stream and ncclCommGetAsyncError are polled until the collective is done, an
// NCCL error appears, another rank is reported dead (core/peer_failure.h, from the rank watch:
// train/dist/rank_watch.h), or timeout_s seconds (run.collective_timeout_s) pass. The last three
// abort the communicator and throw a DeviceError naming this rank and the operation (and the
// dead rank, when the watch named it), so that a dead peer ends every rank with a message
// instead of a hang.
#pragma once
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sinklab::cuda {

bool nccl_available();

class Communicator {
 public:
  // ncclGetUniqueId as bytes: rank 0 creates it and shares it (train/dist/bootstrap.h).
  static std::string unique_id();
  // ncclCommInitRank over `world_size` ranks on the current device; a collective that has not
  // finished after timeout_s seconds aborts the communicator (see above).
  Communicator(const std::string& unique_id, int rank, int world_size, double timeout_s);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // t (contiguous f32 on the GPU) <- mean over ranks of t, in place (the gradient all-reduce).
  void all_reduce_mean(Tensor& t, const char* what = "gradients");
  // Starts the mean over ranks of t (contiguous f32 on the GPU, in place) on a side stream,
  // after the work queued on the compute stream so far, and returns at once: backward goes on
  // while a bucket of gradients is reduced. t's memory must stay alive until wait_started.
  void start_all_reduce_mean(Tensor& t, const char* what);
  // Waits (with the watchdog) until every started reduction is done; the compute stream then
  // waits for them too.
  void wait_started(const char* what);
  // Sum over ranks of a host value (losses, counts).
  double sum(double value, const char* what);
  // t (contiguous on the GPU) holds rank r's part [bounds[r], bounds[r+1]) on rank r; after,
  // every rank holds all parts (one broadcast per rank, grouped).
  void all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds, const char* what);
  // Every rank's host values, concatenated in rank order (the same count on every rank).
  std::vector<double> all_gather(const std::vector<double>& mine, const char* what);

 private:
  // Polls until the compute stream (or, with started, the side stream's last event) is done.
  void wait(const char* what, bool started = false);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_size_ = 1;
};

}  // namespace sinklab::cuda
