// ggml's q4_0 and q8_0 block formats (32 values per block, one f16 scale d):
//   q8_0: d, int8 q[32];                  x_i = d * q_i
//   q4_0: d, uint8 qs[16] (two nibbles);  x_i = d * (nibble_i - 8), low nibbles hold i = 0..15,
//                                         high nibbles i = 16..31
// Reference quantize/dequantize, matching llama.cpp's reference rounding.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tz::io {

constexpr size_t kQ4_0BlockBytes = 18, kQ8_0BlockBytes = 34, kGgmlBlock = 32;

void dequantize_q8_0(const uint8_t* blocks, float* out, size_t n);  // n multiple of 32
void dequantize_q4_0(const uint8_t* blocks, float* out, size_t n);
void quantize_q8_0(const float* x, uint8_t* blocks, size_t n);
void quantize_q4_0(const float* x, uint8_t* blocks, size_t n);

}  // namespace tz::io
