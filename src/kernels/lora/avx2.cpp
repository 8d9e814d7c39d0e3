// AVX2 fused LoRA kernels (8 lanes).
#include <immintrin.h>

#include "kernels/lora/lora_impl.h"

namespace tz::kernels::lora {
namespace {
struct Vec8 {
  static constexpr int L = 8;
  __m256 v;
  static Vec8 zero() { return {_mm256_setzero_ps()}; }
  static Vec8 set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Vec8 load(const uint16_t* p) {
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16))};
  }
  static float widen(float v) { return v; }
  static float widen(uint16_t v) { return bf16_widen(v); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  static Vec8 fma(Vec8 a, Vec8 b, Vec8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  friend Vec8 operator+(Vec8 a, Vec8 b) { return {_mm256_add_ps(a.v, b.v)}; }
  float sum() const {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
};
}  // namespace
extern const Kernels lora_bgmv_f32__avx2{shrink<Vec8>, expand<Vec8>};
}  // namespace tz::kernels::lora
