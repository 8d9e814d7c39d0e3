// Variants of the f32 <-> bf16/f16 conversion kernels (family "convert"). All are bit-exact with
// the scalar reference (NaN payloads aside: every path returns a quiet NaN of the same sign).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

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

// Families "convert_f32_bf16", "convert_f32_f16" (ToHalfConfig) and "convert_bf16_f32",
// "convert_f16_f32" (FromHalfConfig).
struct ToHalfConfig {
  F32ToHalfFn convert;
};
struct FromHalfConfig {
  HalfToF32Fn convert;
};

}  // namespace tz::kernels

namespace tz::detail {
KernelFamily<kernels::ToHalfConfig>& convert_f32_bf16_family();
KernelFamily<kernels::FromHalfConfig>& convert_bf16_f32_family();
KernelFamily<kernels::ToHalfConfig>& convert_f32_f16_family();
KernelFamily<kernels::FromHalfConfig>& convert_f16_f32_family();
}  // namespace tz::detail
