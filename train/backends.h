// The one place where a build's backends are registered: in a CUDA build, the CUDA kernels of
// the op table and the CUDA device runtime (cuda::initialize, when a GPU is present) and the
// NCCL collective between GPU ranks. A build without CUDA registers nothing: the CPU kernels and
// runtime and the TCP collective are built in. main() calls it once, before any work.
#pragma once

namespace sinklab::train {

void register_backends();

}  // namespace sinklab::train
