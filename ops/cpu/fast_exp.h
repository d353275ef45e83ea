// exp for the CPU kernels' f32 loops (softmax weights, GELU), written so that the compiler
// vectorises a loop of calls: only multiplies, adds, conversions and bit operations, no libm
// call and no branch. Within 2 ulp of std::exp on [-87.3, 88.3]; below that range it returns 0
// (as exp underflows), above it exp(88.3) ~ 2e38 (not inf); NaN stays NaN. f64 uses std::exp (the
// gradient checks run in f64 and keep libm's accuracy).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace sinklab::cpu {

inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // x = n ln 2 + r with n an integer and |r| <= ln 2 / 2; exp(x) = 2^n exp(r).
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  // exp(r) by its degree-7 Taylor-like polynomial (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n as a float's bits
  const float result = x < -87.3f ? 0.0f : p * std::bit_cast<float>(bits);
  return x != x ? x : result;
}

inline double fast_exp(double x) { return std::exp(x); }

}  // namespace sinklab::cpu
