// Tensor fills from the Philox stream (seed, stream, offset): element i draws index offset + i.
#pragma once
#include "core/philox.h"
#include "core/tensor.h"

namespace sinklab {

struct RngKey {
  uint64_t seed = 0;
  uint64_t stream = 0;  // purpose of the draw (init of parameter k, dropout, data, ...)
  uint64_t offset = 0;  // first element index
};

Tensor randn(const Shape& shape, RngKey key, double stddev = 1.0, DType dtype = DType::F32);
Tensor rand_uniform(const Shape& shape, RngKey key, double lo = 0.0, double hi = 1.0,
                    DType dtype = DType::F32);
// Integers uniform in [0, n).
Tensor rand_ints(const Shape& shape, RngKey key, int32_t n);

// A 64-bit mix of several words, for deriving stream ids from (purpose, step, rank, ...).
uint64_t rng_stream_id(std::initializer_list<uint64_t> words);

}  // namespace sinklab
