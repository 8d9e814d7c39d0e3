// AVX2 FFT convolution: 8 rows per group, one per ymm lane (see avx512.cpp).
#include <immintrin.h>

#include "kernels/fft/fft.h"

namespace tz::kernels::fft {
namespace {

struct Vec8 {
  static constexpr int L = 8;
  __m256 v;
  static Vec8 set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec8 zero() { return {_mm256_setzero_ps()}; }
  static Vec8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  static Vec8 fma(Vec8 a, Vec8 b, Vec8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  static Vec8 fms(Vec8 a, Vec8 b, Vec8 c) { return {_mm256_fmsub_ps(a.v, b.v, c.v)}; }
  friend Vec8 operator+(Vec8 a, Vec8 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend Vec8 operator-(Vec8 a, Vec8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend Vec8 operator*(Vec8 a, Vec8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
};

}  // namespace

void conv_group__avx2(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec8>*>(ws);
  conv_group<Vec8>(pc, group, io, z, z + pc.m);
}

}  // namespace tz::kernels::fft
