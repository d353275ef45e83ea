// Named parameters in flat buffers: values, gradients (and optimizer moments, see optimizer.h)
// each live in one contiguous storage; every parameter is a view into it. One loop (or one
// kernel) serves zeroing, clipping, AdamW, all-reduce and checkpointing.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace sinklab::train {

enum class Init { Normal, Zeros, Ones, Constant };

struct ParamSpec {
  std::string name;   // Hugging Face name, e.g. "model.layers.3.self_attn.o_proj.weight"
  Shape shape;
  Init init = Init::Normal;
  double value = 0.02;  // stddev for Normal, the constant for Constant
  bool decay = false;   // weight decay applies (matrices)
  bool embedding = false;  // token/position table (optim.decay_embeddings decides its decay)
};

struct Param {
  ParamSpec spec;
  int64_t offset = 0;   // in elements, within the flat buffers
  Tensor value;         // view into the value buffer, requires_grad
  Tensor grad;          // view into the gradient buffer (also set as value.grad())
};

// How a new ParameterSet's values start: drawn from each spec's init, or zeros for a caller that
// overwrites every value (load_weights): drawing 152M normals took 5 to 7 s of one core.
enum class InitialValues { Drawn, Zeros };

class ParameterSet {
 public:
  // Allocates the flat buffers and initialises every parameter from Philox keyed by
  // (seed, hash of its name): the same name gets the same values in every variant. With
  // InitialValues::Zeros every value is 0 instead (nothing drawn, the seed unused).
  ParameterSet(std::vector<ParamSpec> specs, uint64_t seed, DType dtype, Device device,
               InitialValues initial = InitialValues::Drawn);

  const std::vector<Param>& params() const { return params_; }
  const Param& get(const std::string& name) const;  // ConfigError-free: throws ValueError
  const Tensor& operator[](const std::string& name) const { return get(name).value; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // One leaf over parameters that lie next to each other in the flat buffers, in the order
  // given, with equal trailing dims: their rows stacked, e.g. LLaMA's q, k and v weights (C, C)
  // each as one (3C, C) weight, so that one product replaces three. Its gradient is the view of
  // the same rows of the gradient buffer, so the product's weight gradient lands in each
  // parameter's own gradient. Undefined when the parameters are not adjacent in this order. The
  // leaf always requires grad and always has the flat gradient view: per-parameter gradient
  // settings (none exist today) would not reach it.
  Tensor packed(const std::vector<std::string>& names) const;
  int64_t numel() const { return numel_; }
  Tensor flat_values() const { return flat_values_; }  // (numel,)
  Tensor flat_grads() const { return flat_grads_; }    // (numel,)
  void zero_grad();

 private:
  std::vector<Param> params_;
  std::map<std::string, size_t> index_;
  int64_t numel_ = 0;
  Tensor flat_values_, flat_grads_;
};

}  // namespace sinklab::train
