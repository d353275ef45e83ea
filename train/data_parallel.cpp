#include "train/data_parallel.h"

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/bootstrap.h"
#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/communicator.h"
#endif

namespace sinklab::cuda {
#if !defined(SINKLAB_HAVE_CUDA)
class Communicator {};  // no GPU build: world sizes > 1 are refused before one is made
#endif
}  // namespace sinklab::cuda

namespace sinklab::train {

DataParallel::DataParallel(const LaunchEnv& env, Device device) : env_(env) {
  if (!env_.distributed()) return;
  SINKLAB_CHECK(device.is_cuda(), ConfigError,
                "a data-parallel launch (" << env_.launcher << ", world size "
                                           << env_.world_size << ") needs run.device: cuda",
                "set run.device: cuda (each rank uses the GPU of its local rank), or launch "
                "one process");
#if defined(SINKLAB_HAVE_CUDA)
  std::string id = env_.rank == 0 ? cuda::Communicator::unique_id() : std::string();
  id = share_from_rank0(env_, id);
  comm_ = std::make_unique<cuda::Communicator>(id, env_.rank, env_.world_size);
#else
  SINKLAB_FAIL(DeviceError, "rank " << env_.rank << ": this build has no CUDA",
               "rebuild with CUDA and NCCL to train on several GPUs");
#endif
}

DataParallel::~DataParallel() = default;

void DataParallel::average_gradients(Tensor& flat_grads) {
#if defined(SINKLAB_HAVE_CUDA)
  if (comm_) comm_->all_reduce_mean(flat_grads, "gradient all-reduce");
#else
  (void)flat_grads;
#endif
}

double DataParallel::average(double value) {
#if defined(SINKLAB_HAVE_CUDA)
  if (comm_) return comm_->sum(value, "loss all-reduce") / env_.world_size;
#endif
  return value;
}

std::vector<std::vector<double>> DataParallel::all_gather(const std::vector<double>& mine) {
#if defined(SINKLAB_HAVE_CUDA)
  if (comm_) {
    const std::vector<double> all = comm_->all_gather(mine, "sink metrics all-gather");
    std::vector<std::vector<double>> ranks;
    const size_t n = mine.size();
    for (int r = 0; r < env_.world_size; ++r)
      ranks.emplace_back(all.begin() + r * n, all.begin() + (r + 1) * n);
    return ranks;
  }
#endif
  return {mine};
}

void select_local_gpu(const LaunchEnv& env) {
  if (!env.distributed()) return;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  std::vector<std::string> ids;
  if (visible != nullptr) {
    std::stringstream list(visible);
    for (std::string id; std::getline(list, id, ',');)
      if (!id.empty()) ids.push_back(id);
  }
  if (ids.size() == 1) return;  // the launcher already gave this rank its GPU
  std::string mine = std::to_string(env.local_rank);
  if (!ids.empty()) {
    SINKLAB_CHECK(env.local_rank < static_cast<int>(ids.size()), ConfigError,
                  "local rank " << env.local_rank << " but CUDA_VISIBLE_DEVICES=" << visible
                                << " lists " << ids.size() << " GPUs",
                  "start at most one rank per visible GPU on each node");
    mine = ids[env.local_rank];
  }
  ::setenv("CUDA_VISIBLE_DEVICES", mine.c_str(), 1);
}

}  // namespace sinklab::train
