// Data parallelism for the trainer. For a single process, every call is a no-op. For several
// ranks (train/dist/launcher.h), it holds the ranks' Collective (train/dist/collective.h): NCCL
// (cuda/communicator.h, its unique id shared by rank 0 through train/dist/bootstrap.h) when
// run.device is cuda, TCP (train/dist/tcp_collective.h) when it is cpu.
//
// Each rank draws its own slice of every global batch (DataLoader::next_slice). The flat
// gradient buffer is averaged over the ranks in buckets of whole parameters, each started as soon
// as the step's last backward has produced all of its gradients (autograd's leaf-ready hook), so
// the reduction overlaps the rest of backward; the step's loss is averaged too. Every rank then runs the same clipped AdamW update on the same numbers, so the
// weights stay identical. Only rank 0 writes files (configs, metrics, checkpoints) and the
// console. The sink metrics are exchanged between the ranks (RankExchange) and describe the
// whole global batch (train/metrics/sink_metrics.h says how each one combines).
#pragma once
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "train/dist/collective.h"
#include "train/dist/launcher.h"
#include "train/optimizer.h"
#include "train/parameters.h"
#include "train/metrics/sink_metrics.h"

namespace sinklab::train {

// How the ranks reduce (run.bucket_mib and run.collective_timeout_s).
struct DataParallelOptions {
  double bucket_mib;            // gradient buckets of about this many MiB of whole parameters
  double collective_timeout_s;  // a rank waiting longer for the others fails, naming the operation
};

class DataParallel : public RankExchange {
 public:
  // Connects the ranks (a world size > 1): NCCL on cuda, TCP on cpu.
  DataParallel(const LaunchEnv& env, Device device, const DataParallelOptions& options);
  ~DataParallel() override;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool writer() const { return env_.rank == 0; }  // writes files and the console
  // Mean over ranks, in place, of the flat gradient buffer, overlapped with backward: call
  // start_gradient_reduction(params) just before the
  // backward of a step's last micro-batch and finish_gradient_reduction(params) after it.
  // Buckets are about options.bucket_mib MiB of whole parameters, last parameters first
  // (backward finishes them first); finish starts those no gradient reached and waits for all.
  // Buckets start in a fixed order (plan order), the same on every rank. No-ops for one process.
  void start_gradient_reduction(ParameterSet& params);
  void finish_gradient_reduction(ParameterSet& params);
  // The buckets' [begin, end) element ranges of params' flat gradient buffer, in plan order.
  std::vector<std::pair<int64_t, int64_t>> gradient_buckets(ParameterSet& params);
  // Mean over ranks of a host value (the step's loss).
  double average(double value);
  // True on every rank when `flag` is true on any (one small collective; `flag` for one process).
  bool any(bool flag, const char* what);
  // ZeRO-1 (optim.zero1): rank r's AdamW holds the moments of elements [numel r / W,
  // numel (r+1) / W) of the flat buffers and updates only those values; the updated parts are
  // then all-gathered, so every rank again holds all the weights.
  Shard optimizer_shard(int64_t numel) const;
  void gather_parameter_shards(ParameterSet& params);
  // The whole of a sharded moment buffer (`shard`, this rank's part), on every rank: for
  // checkpoints, which hold full moments whatever the world size.
  Tensor gather_moments(const Tensor& shard, int64_t numel);
  // Every rank's values, in rank order (one entry, `mine`, for a single process). `what` names
  // the exchange in a timeout's error; the sink metrics' exchange by default.
  std::vector<std::vector<double>> all_gather(const std::vector<double>& mine,
                                              const char* what);
  std::vector<std::vector<double>> all_gather(const std::vector<double>& mine) override {
    return all_gather(mine, "sink metrics all-gather");
  }

 private:
  struct BucketPlan;
  BucketPlan& plan_for(ParameterSet& params);
  void start_ready_buckets(BucketPlan& plan, bool all);
  std::vector<int64_t> shard_bounds(int64_t numel) const;  // (world size + 1)

  LaunchEnv env_;
  DataParallelOptions options_;
  std::unique_ptr<Collective> collective_;
  std::map<const void*, std::unique_ptr<BucketPlan>> plans_;  // per flat gradient buffer
};

// Before CUDA starts: restricts the process to its GPU (CUDA_VISIBLE_DEVICES = local rank, or
// that entry of a list the launcher already set), so that cuda:0 is this rank's GPU.
void select_local_gpu(const LaunchEnv& env);

}  // namespace sinklab::train
