#include "train/dist/nccl_collective.h"

#include <string>

#include "cuda/communicator.h"
#include "train/dist/bootstrap.h"
#include "train/dist/rank_watch.h"

namespace sinklab::train {

namespace {

// NCCL between the ranks' GPUs; rank 0's unique id travels through train/bootstrap, whose
// connections then carry the rank watch (a dead peer is named at once, not after the timeout).
class NcclCollective : public Collective {
 public:
  NcclCollective(const LaunchEnv& env, double timeout_s) {
    std::string id = env.rank == 0 ? cuda::Communicator::unique_id() : std::string();
    std::vector<Socket> connections;  // to rank 0 (or, on rank 0, to each rank): the watch's
    id = share_from_rank0(env, id, 300, &connections);
    comm_ = std::make_unique<cuda::Communicator>(id, env.rank, env.world_size, timeout_s);
    if (!connections.empty()) watch_ = std::make_unique<RankWatch>(env, std::move(connections));
  }
  void all_reduce_mean(Tensor& t, const char* what) override { comm_->all_reduce_mean(t, what); }
  double sum(double value, const char* what) override { return comm_->sum(value, what); }
  std::vector<double> all_gather(const std::vector<double>& mine, const char* what) override {
    return comm_->all_gather(mine, what);
  }
  void start_all_reduce_mean(Tensor& t, const char* what) override {
    comm_->start_all_reduce_mean(t, what);
  }
  void wait_started(const char* what) override { comm_->wait_started(what); }
  void all_gather_ranges(Tensor& t, const std::vector<int64_t>& bounds,
                         const char* what) override {
    comm_->all_gather_ranges(t, bounds, what);
  }

 private:
  std::unique_ptr<cuda::Communicator> comm_;
  std::unique_ptr<RankWatch> watch_;  // destroyed first: a goodbye, then the communicator
};
}  // namespace

std::unique_ptr<Collective> make_nccl_collective(const LaunchEnv& env, double timeout_s) {
  return std::make_unique<NcclCollective>(env, timeout_s);
}

}  // namespace sinklab::train
