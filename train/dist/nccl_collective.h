// The Collective between GPU ranks: NCCL (cuda/communicator.h), its unique id shared by rank 0
// through train/dist/bootstrap.h. Compiled only into CUDA builds; train/backends.cpp registers
// it (train/dist/collective.h register_gpu_collective).
#pragma once
#include <memory>

#include "train/dist/collective.h"

namespace sinklab::train {

std::unique_ptr<Collective> make_nccl_collective(const LaunchEnv& env, double timeout_s);

}  // namespace sinklab::train
