// Element types. bf16 is a storage format: math converts to fp32.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace sinklab {

enum class DType : uint8_t { F32, BF16, F64, I32 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F64: return 8;
    case DType::I32: return 4;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
  }
  return "?";
}

inline bool is_floating(DType t) { return t != DType::I32; }

// bfloat16: the upper 16 bits of an IEEE fp32, rounded to nearest even.
struct bf16 {
  uint16_t bits = 0;
};

inline float bf16_to_float(bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  bf16 out;
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {  // NaN stays a quiet NaN
    out.bits = static_cast<uint16_t>((u >> 16) | 0x40);
    return out;
  }
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  out.bits = static_cast<uint16_t>((u + rounding) >> 16);
  return out;
}

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }

}  // namespace sinklab
