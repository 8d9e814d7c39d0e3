// Variants of the f32 <-> bf16/f16 conversion kernels (family "convert"). All are bit-exact with
// the scalar reference (NaN payloads aside: every path returns a quiet NaN of the same sign).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tz::kernels {

using F32ToHalfFn = void (*)(const float*, uint16_t*, size_t);
using HalfToF32Fn = void (*)(const uint16_t*, float*, size_t);

void convert_f32_bf16__ref(const float*, uint16_t*, size_t);
void convert_bf16_f32__ref(const uint16_t*, float*, size_t);
void convert_f32_f16__ref(const float*, uint16_t*, size_t);
void convert_f16_f32__ref(const uint16_t*, float*, size_t);

void convert_f32_bf16__avx2(const float*, uint16_t*, size_t);
void convert_bf16_f32__avx2(const uint16_t*, float*, size_t);
void convert_f32_f16__avx2(const float*, uint16_t*, size_t);
void convert_f16_f32__avx2(const uint16_t*, float*, size_t);

void convert_f32_bf16__avx512(const float*, uint16_t*, size_t);
void convert_bf16_f32__avx512(const uint16_t*, float*, size_t);
void convert_f32_f16__avx512(const float*, uint16_t*, size_t);
void convert_f16_f32__avx512(const uint16_t*, float*, size_t);

}  // namespace tz::kernels
