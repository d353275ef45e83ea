#include "train/data_parallel.h"

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/bootstrap.h"
#include "train/tcp_collective.h"
#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/communicator.h"
#endif

namespace sinklab::train {

namespace {

#if defined(SINKLAB_HAVE_CUDA)
// NCCL between the ranks' GPUs; rank 0's unique id travels through train/bootstrap.
class NcclCollective : public Collective {
 public:
  explicit NcclCollective(const LaunchEnv& env) {
    std::string id = env.rank == 0 ? cuda::Communicator::unique_id() : std::string();
    id = share_from_rank0(env, id);
    comm_ = std::make_unique<cuda::Communicator>(id, env.rank, env.world_size);
  }
  void all_reduce_mean(Tensor& t, const char* what) override { comm_->all_reduce_mean(t, what); }
  double sum(double value, const char* what) override { return comm_->sum(value, what); }
  std::vector<double> all_gather(const std::vector<double>& mine, const char* what) override {
    return comm_->all_gather(mine, what);
  }

 private:
  std::unique_ptr<cuda::Communicator> comm_;
};
#endif

}  // namespace

DataParallel::DataParallel(const LaunchEnv& env, Device device) : env_(env) {
  if (!env_.distributed()) return;
  if (device.is_cpu()) {
    collective_ = std::make_unique<TcpCollective>(env_);
    return;
  }
#if defined(SINKLAB_HAVE_CUDA)
  collective_ = std::make_unique<NcclCollective>(env_);
#else
  SINKLAB_FAIL(DeviceError, "rank " << env_.rank << ": this build has no CUDA",
               "rebuild with CUDA and NCCL to train on several GPUs");
#endif
}

DataParallel::~DataParallel() = default;

void DataParallel::average_gradients(Tensor& flat_grads) {
  if (collective_) collective_->all_reduce_mean(flat_grads, "gradient all-reduce");
}

double DataParallel::average(double value) {
  if (collective_) return collective_->sum(value, "loss all-reduce") / env_.world_size;
  return value;
}

std::vector<std::vector<double>> DataParallel::all_gather(const std::vector<double>& mine) {
  if (!collective_) return {mine};
  const std::vector<double> all = collective_->all_gather(mine, "sink metrics all-gather");
  std::vector<std::vector<double>> ranks;
  const size_t n = mine.size();
  for (int r = 0; r < env_.world_size; ++r)
    ranks.emplace_back(all.begin() + r * n, all.begin() + (r + 1) * n);
  return ranks;
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
