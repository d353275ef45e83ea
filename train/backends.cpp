#include "train/backends.h"

#if defined(SINKLAB_HAVE_CUDA)
#include "cuda/runtime.h"
#include "train/dist/collective.h"
#include "train/dist/nccl_collective.h"
#endif

namespace sinklab::train {

void register_backends() {
#if defined(SINKLAB_HAVE_CUDA)
  cuda::initialize();  // installs the CUDA kernels and runtime when a GPU is present
  register_gpu_collective(make_nccl_collective);
#endif
}

}  // namespace sinklab::train
