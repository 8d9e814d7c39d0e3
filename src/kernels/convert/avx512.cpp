// AVX-512 conversions with masked tails. bf16 rounding in integer lanes rather than
// VCVTNEPS2BF16, which flushes denormal inputs to zero and would disagree with the reference.
#include <immintrin.h>

#include "kernels/convert/convert.h"

namespace tz::kernels {

namespace {
inline __mmask16 tail_mask(size_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }
}  // namespace

void convert_f32_bf16__avx512(const float* s, uint16_t* d, size_t n) {
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x00400000);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i x = _mm512_maskz_loadu_epi32(m, s + i);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, bias), lsb);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(x, quiet));
    _mm256_mask_storeu_epi16(d + i, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
  }
}

void convert_bf16_f32__avx512(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s + i));
    _mm512_mask_storeu_epi32(d + i, m, _mm512_slli_epi32(h, 16));
  }
}

void convert_f32_f16__avx512(const float* s, uint16_t* d, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, s + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_mask_storeu_epi16(d + i, m, h);
  }
}

void convert_f16_f32__avx512(const uint16_t* s, float* d, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(d + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i)));
  }
}

}  // namespace tz::kernels
