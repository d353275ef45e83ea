// Data parallelism for the trainer. For a single process, every call is a no-op. For several
// ranks (train/launcher.h), it holds an NCCL communicator (cuda/communicator.h) whose unique id
// rank 0 shares through train/bootstrap.h.
//
// Each rank draws its own slice of every global batch (DataLoader::next_slice). After backward,
// the flat gradient buffer is averaged over the ranks in one all-reduce, and the step's loss is
// averaged too. Every rank then runs the same clipped AdamW update on the same numbers, so the
// weights stay identical. Only rank 0 writes files (configs, metrics, checkpoints) and the
// console. The sink metrics are exchanged between the ranks (RankExchange) and describe the
// whole global batch (train/sink_metrics.h says how each one combines).
#pragma once
#include <memory>

#include "core/device.h"
#include "core/tensor.h"
#include "train/launcher.h"
#include "train/sink_metrics.h"

namespace sinklab::cuda {
class Communicator;
}

namespace sinklab::train {

class DataParallel : public RankExchange {
 public:
  // Throws ConfigError when a world size > 1 meets run.device: cpu (`device`).
  DataParallel(const LaunchEnv& env, Device device);
  ~DataParallel() override;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool writer() const { return env_.rank == 0; }  // writes files and the console
  // Mean over ranks, in place, of the flat f32 gradient buffer on the GPU.
  void average_gradients(Tensor& flat_grads);
  // Mean over ranks of a host value (the step's loss).
  double average(double value);
  // Every rank's values, in rank order (one entry, `mine`, for a single process).
  std::vector<std::vector<double>> all_gather(const std::vector<double>& mine) override;

 private:
  LaunchEnv env_;
  std::unique_ptr<cuda::Communicator> comm_;
};

// Before CUDA starts: restricts the process to its GPU (CUDA_VISIBLE_DEVICES = local rank, or
// that entry of a list the launcher already set), so that cuda:0 is this rank's GPU.
void select_local_gpu(const LaunchEnv& env);

}  // namespace sinklab::train
