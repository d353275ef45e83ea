// Error checks after every CUDA runtime, cuBLAS(Lt) call and kernel launch: a DeviceError naming
// the call, the CUDA error string, file:line and a hint.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.h"

#define SINKLAB_CUDA_CHECK(expr)                                                          \
  do {                                                                                    \
    cudaError_t sinklab_status_ = (expr);                                                 \
    SINKLAB_CHECK(sinklab_status_ == cudaSuccess, DeviceError,                           \
                  #expr << " failed: " << cudaGetErrorName(sinklab_status_) << ": "      \
                        << cudaGetErrorString(sinklab_status_),                          \
                  "check the device is present and has free memory (nvidia-smi)");       \
  } while (0)

#define SINKLAB_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                    \
    cublasStatus_t sinklab_status_ = (expr);                                              \
    SINKLAB_CHECK(sinklab_status_ == CUBLAS_STATUS_SUCCESS, DeviceError,                 \
                  #expr << " failed with cuBLAS status " << static_cast<int>(sinklab_status_), \
                  "see cublasStatus_t; shapes, layouts or workspace may be unsupported"); \
  } while (0)

// After a kernel launch: reports launch-configuration errors at once (asynchronous faults are
// reported by the next synchronising call).
#define SINKLAB_KERNEL_CHECK(name) SINKLAB_CUDA_CHECK(cudaGetLastError())
