// The op table. Each op is declared once, in its own ops/<op>.h/.cpp: shape/dtype/device checks
// at its entry, one OpKernels row (CPU reference forward/backward from ops/cpu/, CUDA slots that
// cuda/ fills when built), and the autograd record with what backward saves.
// The device is chosen once, here, at the op's entry; kernels never branch on device.
#pragma once
#include <utility>

#include "core/error.h"
#include "core/tensor.h"

namespace sinklab::ops {

template <class ForwardFn, class BackwardFn>
struct OpKernels {
  const char* name;
  ForwardFn cpu_forward;
  BackwardFn cpu_backward;
  ForwardFn cuda_forward = nullptr;
  BackwardFn cuda_backward = nullptr;

  ForwardFn forward(Device device) const { return pick(device, cpu_forward, cuda_forward); }
  BackwardFn backward(Device device) const { return pick(device, cpu_backward, cuda_backward); }

 private:
  template <class Fn>
  Fn pick(Device device, Fn cpu, Fn cuda) const {
    if (device.is_cpu()) return cpu;
    SINKLAB_CHECK(cuda != nullptr, DeviceError,
                  name << ": no CUDA kernel is installed for " << device.str(),
                  "build with CUDA (-DSINKLAB_CUDA=ON) or run on the CPU");
    return cuda;
  }
};

}  // namespace sinklab::ops
