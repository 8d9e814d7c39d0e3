// Scalar reference conversions, integer arithmetic only, so results do not depend on the FPU's
// rounding or flush-to-zero state. Round-to-nearest-even throughout.
#include <cstring>

#include "kernels/convert/convert.h"
#include "tensorzip/convert.h"

namespace tz {
namespace {
uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
}  // namespace

uint16_t f32_to_bf16_scalar(float f) {
  const uint32_t x = bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x0040u);  // quiet NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float bf16_to_f32_scalar(uint16_t h) { return float_of(uint32_t(h) << 16); }

uint16_t f32_to_f16_scalar(float f) {
  const uint32_t x = bits_of(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax >= 0x38800000u) {                                 // normal f16: rebias 127 -> 15
    const uint32_t r = ax - 0x38000000u;
    return uint16_t(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  if (ax < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25)
  // Subnormal: value * 2^24 rounded to an integer count of 2^-24 units.
  const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

float f16_to_f32_scalar(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    if (m == 0) return float_of(sign);
    int exp = 113;  // normalise the subnormal
    while (!(m & 0x400u)) { m <<= 1; --exp; }
    return float_of(sign | (uint32_t(exp) << 23) | ((m & 0x3ffu) << 13));
  }
  if (e == 31) return float_of(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
  return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

namespace kernels {
void convert_f32_bf16__ref(const float* s, uint16_t* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16_scalar(s[i]);
}
void convert_bf16_f32__ref(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32_scalar(s[i]);
}
void convert_f32_f16__ref(const float* s, uint16_t* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16_scalar(s[i]);
}
void convert_f16_f32__ref(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = f16_to_f32_scalar(s[i]);
}
}  // namespace kernels
}  // namespace tz
