#include "tests/cuda_compare.h"

#include "autograd/engine.h"
#include "core/random.h"
#include "tests/helpers.h"

namespace sinklab::test {

namespace {
// A leaf copy of t on `device`, with t's requires_grad.
Tensor leaf_on(const Tensor& t, Device device) {
  Tensor out = t.detach().to_device(device);
  if (out.same_storage(t)) out = t.detach().copy_contiguous();
  if (t.requires_grad()) out.set_requires_grad(true);
  return out;
}
}  // namespace

void require_cuda_matches_cpu(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                              const std::vector<Tensor>& cpu_inputs, CudaCompareOptions options) {
  std::vector<Tensor> on_cpu, on_gpu;
  for (const Tensor& t : cpu_inputs) {
    on_cpu.push_back(leaf_on(t, Device::cpu()));
    on_gpu.push_back(leaf_on(t, Device::cuda(0)));
  }
  Tensor out_cpu = f(on_cpu);
  Tensor out_gpu = f(on_gpu);
  REQUIRE(out_gpu.device().is_cuda());
  INFO("forward " << out_cpu.str());
  require_close(out_gpu.to_device(Device::cpu()), out_cpu, options.rtol, options.atol);
  if (!options.check_backward || !out_cpu.requires_grad()) return;
  Tensor seed = randn(out_cpu.shape(), RngKey{77, 1, 0}, 1.0, out_cpu.dtype());
  autograd::backward(out_cpu, seed);
  autograd::backward(out_gpu, seed.to_device(Device::cuda(0)));
  for (size_t i = 0; i < on_cpu.size(); ++i) {
    if (!on_cpu[i].requires_grad()) continue;
    INFO("gradient of input " << i << " " << on_cpu[i].str());
    REQUIRE(on_gpu[i].grad().defined());
    require_close(on_gpu[i].grad().to_device(Device::cpu()), on_cpu[i].grad(), options.rtol,
                  options.atol);
  }
}

CudaCompareOptions tolerance(DType dt, int64_t rows) {
  CudaCompareOptions o;
  if (dt == DType::F64) {
    o.rtol = 1e-10;
    o.atol = 1e-10;
  } else {
    o.rtol = 1e-4;
    o.atol = rows > 200 ? 1e-4 : 1e-5;
  }
  return o;
}

CudaCompareOptions bf16_operand_tolerance(double atol) {
  CudaCompareOptions o;
  o.rtol = 2e-2;
  o.atol = atol;
  return o;
}

}  // namespace sinklab::test
