// Philox4x32-10 counter-based RNG (Salmon et al., SC'11). Pure functions of
// (seed, stream, index): the same numbers on the CPU and in CUDA kernels, any thread order.
// Element `index` of a draw uses its own counter block, so any slice can be regenerated.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SINKLAB_HD __host__ __device__ __forceinline__
#else
#define SINKLAB_HD inline
#endif

namespace sinklab {

struct PhiloxBlock {
  uint32_t v[4];
};

SINKLAB_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// counter = (index lo, index hi, stream lo, stream hi), key = (seed lo, seed hi).
SINKLAB_HD PhiloxBlock philox4x32_10(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits (exactly representable in fp32).
SINKLAB_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<float>(philox4x32_10(seed, stream, index).v[0] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller on two lanes of the element's block.
SINKLAB_HD float philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  PhiloxBlock b = philox4x32_10(seed, stream, index);
  // u1 in (0, 1] so the log is finite.
  float u1 = (static_cast<float>(b.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);
  float u2 = static_cast<float>(b.v[1] >> 8) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

}  // namespace sinklab
