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
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  static Vec16 fma(Vec16 a, Vec16 b, Vec16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  friend Vec16 operator+(Vec16 a, Vec16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  float sum() const { return _mm512_reduce_add_ps(v); }
};
const Kernels k{shrink<Vec16>, expand<Vec16>};
}  // namespace
const Kernels* kernels__avx512() { return &k; }
}  // namespace tz::kernels::lora
