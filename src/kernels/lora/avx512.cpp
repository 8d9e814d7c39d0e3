// AVX-512 fused LoRA kernels (16 lanes).
#include <immintrin.h>

#include "kernels/lora/lora_impl.h"

namespace tz::kernels::lora {
namespace {
struct Vec16 {
  static constexpr int L = 16;
  __m512 v;
  static Vec16 zero() { return {_mm512_setzero_ps()}; }
  static Vec16 set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec16 load(const uint16_t* p) {
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16))};
  }
  static float widen(float v) { return v; }
  static float widen(uint16_t v) { return bf16_widen(v); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  static Vec16 fma(Vec16 a, Vec16 b, Vec16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  friend Vec16 operator+(Vec16 a, Vec16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  float sum() const { return _mm512_reduce_add_ps(v); }
};
}  // namespace
extern const Kernels lora_bgmv_f32__avx512{shrink<Vec16>, expand<Vec16>};
}  // namespace tz::kernels::lora
