// The collectives a data-parallel job needs, over whatever connects its ranks: NCCL between
// GPUs (cuda/communicator.h), TCP between CPU processes (train/dist/tcp_collective.h). Every rank
// calls the same operations in the same order with the same sizes.
#pragma once
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "train/dist/launcher.h"

namespace sinklab::train {

class Collective {
 public:
  virtual ~Collective() = default;
  // t (contiguous, f32 or f64, on this rank's device) <- the mean over ranks, in place.
  virtual void all_reduce_mean(Tensor& t, const char* what) = 0;
  // Sum over ranks of a host value.
  virtual double sum(double value, const char* what) = 0;
  // Every rank's values concatenated in rank order (the same count on every rank).
  virtual std::vector<double> all_gather(const std::vector<double>& mine, const char* what) = 0;
  // t (contiguous, on this rank's device) holds rank r's part in elements [bounds[r],
  // bounds[r+1]) on rank r (bounds: world size + 1 entries); afterwards every rank holds every
  // part. ZeRO-1's parameter all-gather.
  virtual void all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds,
                                 const char* what) = 0;
  // Starts the mean of t (a view of memory that stays alive, e.g. a bucket of the flat gradient
  // buffer) and may return before it is done; wait_started() completes every started one, in
  // the order started. Every rank starts the same buckets in the same order. By default the
  // reduction runs at once.
  virtual void start_all_reduce_mean(Tensor& t, const char* what) { all_reduce_mean(t, what); }
  virtual void wait_started(const char* what) { (void)what; }
};

// The collective between GPU ranks is registered by the backend that provides it
// (train/backends.cpp: NCCL in CUDA builds); the TCP one is always there. A rank that waits
// timeout_s seconds (run.collective_timeout_s) for the others fails, naming the operation.
using GpuCollectiveFactory = std::unique_ptr<Collective> (*)(const LaunchEnv& env,
                                                             double timeout_s);
void register_gpu_collective(GpuCollectiveFactory factory);
// The registered GPU collective for this rank; DeviceError naming the rank when none is.
std::unique_ptr<Collective> make_gpu_collective(const LaunchEnv& env, double timeout_s);

}  // namespace sinklab::train
