#include "train/parameters.h"

#include <algorithm>
#include <functional>

namespace sinklab::train {

namespace {
uint64_t name_hash(const std::string& name) {  // FNV-1a: stable across platforms and runs
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

ParameterSet::ParameterSet(std::vector<ParamSpec> specs, uint64_t seed, DType dtype,
                           Device device, InitialValues initial) {
  for (auto& spec : specs) {
    SINKLAB_CHECK(!index_.count(spec.name), ValueError, "duplicate parameter name " << spec.name,
                  "parameter names must be unique");
    Param p;
    p.offset = numel_;
    numel_ += numel_of(spec.shape);
    p.spec = std::move(spec);
    index_[p.spec.name] = params_.size();
    params_.push_back(std::move(p));
  }
  if (initial == InitialValues::Zeros) {
    flat_values_ = Tensor::zeros({numel_}, dtype, device);  // (numel,)
  } else {
    flat_values_ = Tensor::empty({numel_}, dtype, Device::cpu());  // (numel,)
    for (Param& p : params_) {
      Tensor v = Tensor::view_of(flat_values_.storage(), p.spec.shape, p.offset, dtype);
      switch (p.spec.init) {
        case Init::Normal:
          v.copy_from(randn(p.spec.shape,
                            RngKey{seed, rng_stream_id({name_hash(p.spec.name)}), 0},
                            p.spec.value, dtype));
          break;
        case Init::Zeros: v.fill(0.0); break;
        case Init::Ones: v.fill(1.0); break;
        case Init::Constant: v.fill(p.spec.value); break;
      }
    }
    flat_values_ = flat_values_.to_device(device);
  }
  flat_grads_ = Tensor::zeros({numel_}, dtype, device);
  for (Param& p : params_) {
    p.value = Tensor::view_of(flat_values_.storage(), p.spec.shape, p.offset, dtype);
    p.value.set_requires_grad(true);
    p.grad = Tensor::view_of(flat_grads_.storage(), p.spec.shape, p.offset, dtype);
    p.value.set_grad(p.grad);
  }
}

const Param& ParameterSet::get(const std::string& name) const {
  auto it = index_.find(name);
  SINKLAB_CHECK(it != index_.end(), ValueError, "no parameter named '" << name << "'",
                "see ParameterSet::params() for the names");
  return params_[it->second];
}

Tensor ParameterSet::packed(const std::vector<std::string>& names) const {
  SINKLAB_CHECK(!names.empty(), ValueError, "ParameterSet::packed: no parameter names",
                "name the parameters to stack, in their order in the flat buffers");
  const Param& first = get(names.front());
  const Shape& shape = first.spec.shape;
  if (shape.empty()) return Tensor();
  int64_t next = first.offset, rows = 0;
  for (const std::string& name : names) {
    const Param& p = get(name);
    if (p.offset != next || p.spec.shape.size() != shape.size() ||
        !std::equal(shape.begin() + 1, shape.end(), p.spec.shape.begin() + 1))
      return Tensor();
    next += numel_of(p.spec.shape);
    rows += p.spec.shape[0];
  }
  Shape stacked = shape;  // (sum of rows, trailing dims...)
  stacked[0] = rows;
  const DType dtype = flat_values_.dtype();
  Tensor value = Tensor::view_of(flat_values_.storage(), stacked, first.offset, dtype);
  value.set_requires_grad(true);
  value.set_grad(Tensor::view_of(flat_grads_.storage(), stacked, first.offset, dtype));
  return value;
}

void ParameterSet::zero_grad() { flat_grads_.fill(0.0); }

}  // namespace sinklab::train
