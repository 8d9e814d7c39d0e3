// AVX-512 FFT convolution: 16 rows per group, one per zmm lane, so the radix-4 Stockham butterflies
// are vertical arithmetic with no shuffles (stockham.h, fftconv_impl.h).
#include <immintrin.h>

#include "kernels/fft/fft.h"

namespace tz::kernels::fft {
namespace {

struct Vec16 {
  static constexpr int L = 16;
  __m512 v;
  static Vec16 set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec16 zero() { return {_mm512_setzero_ps()}; }
  static Vec16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  static Vec16 fma(Vec16 a, Vec16 b, Vec16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static Vec16 fms(Vec16 a, Vec16 b, Vec16 c) { return {_mm512_fmsub_ps(a.v, b.v, c.v)}; }
  friend Vec16 operator+(Vec16 a, Vec16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend Vec16 operator-(Vec16 a, Vec16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend Vec16 operator*(Vec16 a, Vec16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
};

}  // namespace

void conv_group__avx512(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec16>*>(ws);
  conv_group<Vec16>(pc, group, io, z, z + pc.m);
}

}  // namespace tz::kernels::fft
