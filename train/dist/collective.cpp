#include "train/dist/collective.h"

#include "core/error.h"

namespace sinklab::train {

namespace {
GpuCollectiveFactory g_gpu_collective = nullptr;
}  // namespace

void register_gpu_collective(GpuCollectiveFactory factory) { g_gpu_collective = factory; }

std::unique_ptr<Collective> make_gpu_collective(const LaunchEnv& env, double timeout_s) {
  SINKLAB_CHECK(g_gpu_collective != nullptr, DeviceError,
                rank_name(env, env.rank) << ": this build has no CUDA",
                "rebuild with CUDA and NCCL to train on several GPUs");
  return g_gpu_collective(env, timeout_s);
}

}  // namespace sinklab::train
