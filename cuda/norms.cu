// PLACEHOLDER being written now: replaced by the kernels of this file's ops.
#include "cuda/runtime.h"

namespace sinklab::cuda {
void install_norm_kernels() {}
}  // namespace sinklab::cuda
