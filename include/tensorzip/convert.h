// Vectorized conversions between f32 and the 16-bit float types. Round-to-nearest-even; NaN stays
// NaN (quiet), infinities and signed zeros are kept; f16 overflow goes to infinity.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tz {

void f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void bf16_to_f32(const uint16_t* src, float* dst, size_t n);
void f32_to_f16(const float* src, uint16_t* dst, size_t n);
void f16_to_f32(const uint16_t* src, float* dst, size_t n);

// Scalar forms (also the reference the vector paths are tested against).
uint16_t f32_to_bf16_scalar(float x);
float bf16_to_f32_scalar(uint16_t h);
uint16_t f32_to_f16_scalar(float x);
float f16_to_f32_scalar(uint16_t h);

}  // namespace tz
