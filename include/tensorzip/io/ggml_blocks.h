// ggml's q4_0 and q8_0 block formats (32 values per block, one f16 scale d):
//   q8_0: d, int8 q[32];                  x_i = d * q_i
//   q4_0: d, uint8 qs[16] (two nibbles);  x_i = d * (nibble_i - 8), low nibbles hold i = 0..15,
//                                         high nibbles i = 16..31
// Reference quantize/dequantize, matching llama.cpp's reference rounding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

namespace tz::io {

constexpr size_t kQ4_0BlockBytes = 18, kQ8_0BlockBytes = 34, kGgmlBlock = 32;

void dequantize_q8_0(const uint8_t* blocks, float* out, size_t n);  // n multiple of 32
void dequantize_q4_0(const uint8_t* blocks, float* out, size_t n);
void quantize_q8_0(const float* x, uint8_t* blocks, size_t n);
void quantize_q4_0(const float* x, uint8_t* blocks, size_t n);

// Every weight type llama.cpp's files use, to f32, bit-identical to ggml's to_float (and gguf-py):
// f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs,
// tq1_0, tq2_0 (layouts: docs/formats.md). n is a multiple of the type's block; an unsupported type
// throws tz::Error naming it.
bool ggml_dequantize_supported(uint32_t type);
void dequantize_ggml(uint32_t type, const uint8_t* blocks, float* out, size_t n);

// Round-to-nearest quantizers into q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q4_K q5_K q6_K iq4_nl iq4_xs
// (min/max scales; ggml's dequantizer reads every block). n is a multiple of the block.
bool ggml_quantize_supported(uint32_t type);
void quantize_ggml(uint32_t type, const float* x, uint8_t* blocks, size_t n);

// Types whose blocks hold plain b-bit codes of 32 values with one scale (and a min):
//   q4_0 / q5_0: w = d·(q − 8 / 16);  q4_1 / q5_1: w = d·q + m;  q8_0: w = d·(q − 128) (stored as int8).
// The bit width (0 for every other type), and one block written from codes as they are.
int ggml_code_block_bits(uint32_t type);
void encode_ggml_codes(uint32_t type, const uint8_t* codes, float d, float m, uint8_t* block);

}  // namespace tz::io
