#include "core/random.h"

#include <vector>

namespace sinklab {

Tensor randn(const Shape& shape, RngKey key, double stddev, DType dtype) {
  std::vector<double> v(numel_of(shape));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = stddev * philox_normal(key.seed, key.stream, key.offset + i);
  return Tensor::from_doubles(v, shape, dtype);
}

Tensor rand_uniform(const Shape& shape, RngKey key, double lo, double hi, DType dtype) {
  std::vector<double> v(numel_of(shape));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = lo + (hi - lo) * philox_uniform(key.seed, key.stream, key.offset + i);
  return Tensor::from_doubles(v, shape, dtype);
}

Tensor rand_ints(const Shape& shape, RngKey key, int32_t n) {
  SINKLAB_CHECK(n > 0, ValueError, "rand_ints: n = " << n, "n must be positive");
  std::vector<int32_t> v(numel_of(shape));
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t r = philox4x32_10(key.seed, key.stream, key.offset + i).v[0];
    v[i] = static_cast<int32_t>((static_cast<uint64_t>(r) * static_cast<uint64_t>(n)) >> 32);
  }
  return Tensor::from_ints(v, shape);
}

uint64_t rng_stream_id(std::initializer_list<uint64_t> words) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t w : words) {  // splitmix64 over the words
    h ^= w + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    uint64_t z = h;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h = z ^ (z >> 31);
  }
  return h;
}

}  // namespace sinklab
