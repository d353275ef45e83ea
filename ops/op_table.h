// The op table. Each op is declared once, in its own ops/<op>.h/.cpp: shape/dtype/device checks
// at its entry, one OpKernels row (CPU reference forward/backward from ops/cpu/, CUDA slots that
// cuda/ fills when built), and the autograd record with what backward saves.
// The device is chosen once, here, at the op's entry; kernels never branch on device.
#pragma once
#include <utility>

#include "core/error.h"
#include "core/tensor.h"

namespace sinklab::ops {

// The kernel of `fn`'s row for `device`: the CPU one, or the CUDA one that cuda/ installed.
template <class Fn>
Fn pick_kernel(const char* name, Device device, Fn cpu, Fn cuda) {
  if (device.is_cpu()) return cpu;
  SINKLAB_CHECK(cuda != nullptr, DeviceError,
                name << ": no CUDA kernel is installed for " << device.str(),
                "build with CUDA (-DSINKLAB_CUDA=ON) or run on the CPU");
  return cuda;
}

template <class ForwardFn, class BackwardFn>
struct OpKernels {
  const char* name;
  ForwardFn cpu_forward;
  BackwardFn cpu_backward;
  ForwardFn cuda_forward = nullptr;
  BackwardFn cuda_backward = nullptr;

  ForwardFn forward(Device device) const {
    return pick_kernel(name, device, cpu_forward, cuda_forward);
  }
  BackwardFn backward(Device device) const {
    return pick_kernel(name, device, cpu_backward, cuda_backward);
  }
};

// The row of an op outside autograd (the optimizer's in-place updates): one kernel per device,
// no backward.
template <class Fn>
struct UpdateKernels {
  const char* name;
  Fn cpu;
  Fn cuda = nullptr;

  Fn kernel(Device device) const { return pick_kernel(name, device, cpu, cuda); }
};

}  // namespace sinklab::ops
