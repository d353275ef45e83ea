#include "train/dist/data_parallel.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "core/error.h"
#include "train/dist/bootstrap.h"
#include "train/dist/tcp_collective.h"

namespace sinklab::train {

DataParallel::DataParallel(const LaunchEnv& env, Device device,
                           const DataParallelOptions& options)
    : env_(env), options_(options) {
  if (!env_.distributed()) return;
  if (device.is_cpu()) {
    collective_ = std::make_unique<TcpCollective>(env_, options_.collective_timeout_s);
    return;
  }
  collective_ = make_gpu_collective(env_, options_.collective_timeout_s);
}

// The buckets of one ParameterSet's flat gradient buffer.
struct DataParallel::BucketPlan {
  struct Bucket {
    int64_t begin = 0, end = 0;  // elements of the flat buffer
    int params = 0;              // parameters inside
    int ready = 0;               // of them, final in this backward
  };
  Tensor flat;                         // (numel) the flat gradient buffer
  std::vector<Bucket> buckets;         // last parameters first
  std::map<int64_t, int> bucket_of;    // parameter offset -> bucket
  size_t next = 0;                     // buckets start in plan order: the first not started
};

// Starts, in plan order, every bucket from plan.next on that is complete (or every remaining
// one when `all`): each rank then reduces the same ranges in the same order, whatever order
// backward completes them in.
void DataParallel::start_ready_buckets(BucketPlan& plan, bool all) {
  while (plan.next < plan.buckets.size()) {
    BucketPlan::Bucket& b = plan.buckets[plan.next];
    if (!all && b.ready < b.params) return;
    Tensor range = plan.flat.narrow_view(0, b.begin, b.end - b.begin);  // (bucket)
    collective_->start_all_reduce_mean(range, "gradient all-reduce");
    ++plan.next;
  }
}

DataParallel::~DataParallel() {
  if (collective_) autograd::set_leaf_ready_hook({});
}

DataParallel::BucketPlan& DataParallel::plan_for(ParameterSet& params) {
  Tensor flat = params.flat_grads();
  auto& slot = plans_[flat.raw_data()];
  if (slot) return *slot;
  slot = std::make_unique<BucketPlan>();
  BucketPlan& plan = *slot;
  plan.flat = flat;
  const int64_t cap = static_cast<int64_t>(options_.bucket_mib * (1 << 20)) /
                      static_cast<int64_t>(dtype_size(flat.dtype()));  // elements
  std::vector<const Param*> order;
  for (const Param& p : params.params()) order.push_back(&p);
  std::sort(order.begin(), order.end(),
            [](const Param* a, const Param* b) { return a->offset > b->offset; });
  for (const Param* p : order) {
    const int64_t n = p->grad.numel();
    if (plan.buckets.empty() || plan.buckets.back().end - plan.buckets.back().begin >= cap)
      plan.buckets.push_back({p->offset + n, p->offset + n, 0, 0});
    BucketPlan::Bucket& b = plan.buckets.back();
    b.begin = p->offset;  // parameters are contiguous: this one ends where the bucket began
    ++b.params;
    plan.bucket_of[p->offset] = static_cast<int>(plan.buckets.size()) - 1;
  }
  return plan;
}

std::vector<std::pair<int64_t, int64_t>> DataParallel::gradient_buckets(ParameterSet& params) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const BucketPlan::Bucket& b : plan_for(params).buckets) out.emplace_back(b.begin, b.end);
  return out;
}

void DataParallel::start_gradient_reduction(ParameterSet& params) {
  if (!collective_) return;
  BucketPlan& plan = plan_for(params);
  for (auto& b : plan.buckets) b.ready = 0;
  plan.next = 0;
  const auto base = reinterpret_cast<uintptr_t>(plan.flat.raw_data());
  const auto elem = static_cast<uintptr_t>(dtype_size(plan.flat.dtype()));
  const uintptr_t limit = base + static_cast<uintptr_t>(plan.flat.numel()) * elem;
  autograd::set_leaf_ready_hook([this, &plan, base, elem, limit](const Tensor& leaf) {
    const Tensor g = leaf.grad();
    if (!g.defined()) return;
    const auto at = reinterpret_cast<uintptr_t>(g.raw_data());
    if (at < base || at >= limit) return;  // a gradient outside this set's flat buffer
    // Every parameter starting inside the leaf's gradient is final: one, or several for a
    // packed leaf (LLaMA's q, k, v weights as one (3C, C) product, ParameterSet::packed).
    const int64_t first = static_cast<int64_t>((at - base) / elem);
    const auto end = plan.bucket_of.lower_bound(first + g.numel());
    for (auto it = plan.bucket_of.lower_bound(first); it != end; ++it)
      ++plan.buckets[it->second].ready;
    start_ready_buckets(plan, false);
  });
}

void DataParallel::finish_gradient_reduction(ParameterSet& params) {
  if (!collective_) return;
  autograd::set_leaf_ready_hook({});
  BucketPlan& plan = plan_for(params);
  start_ready_buckets(plan, true);  // and those holding parameters no gradient reached
  collective_->wait_started("gradient all-reduce");
}

double DataParallel::average(double value) {
  if (collective_) return collective_->sum(value, "loss all-reduce") / env_.world_size;
  return value;
}

bool DataParallel::any(bool flag, const char* what) {
  if (!collective_) return flag;
  return collective_->sum(flag ? 1.0 : 0.0, what) > 0;
}

std::vector<std::vector<double>> DataParallel::all_gather(const std::vector<double>& mine,
                                                          const char* what) {
  if (!collective_) return {mine};
  const std::vector<double> all = collective_->all_gather(mine, what);
  std::vector<std::vector<double>> ranks;
  const size_t n = mine.size();
  for (int r = 0; r < env_.world_size; ++r)
    ranks.emplace_back(all.begin() + r * n, all.begin() + (r + 1) * n);
  return ranks;
}

std::vector<int64_t> DataParallel::shard_bounds(int64_t numel) const {
  std::vector<int64_t> bounds;
  for (int r = 0; r <= env_.world_size; ++r) bounds.push_back(numel * r / env_.world_size);
  return bounds;
}

Shard DataParallel::optimizer_shard(int64_t numel) const {
  const std::vector<int64_t> bounds = shard_bounds(numel);
  return {bounds[env_.rank], bounds[env_.rank + 1]};
}

void DataParallel::gather_parameter_shards(ParameterSet& params) {
  if (!collective_) return;
  Tensor values = params.flat_values();  // (numel) a handle on the flat buffer
  collective_->all_gather_ranges(values, shard_bounds(params.numel()), "ZeRO-1 parameter all-gather");
}

Tensor DataParallel::gather_moments(const Tensor& shard, int64_t numel) {
  Tensor full = Tensor::empty({numel}, shard.dtype(), shard.device());  // (numel) all parts written
  const std::vector<int64_t> bounds = shard_bounds(numel);
  full.narrow_view(0, bounds[env_.rank], bounds[env_.rank + 1] - bounds[env_.rank])
      .copy_from(shard);
  if (collective_) collective_->all_gather_ranges(full, bounds, "ZeRO-1 moment all-gather");
  return full;
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
