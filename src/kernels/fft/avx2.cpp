// AVX2 FFT convolution: 8 rows per group, one per ymm lane (see avx512.cpp).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/fft/fft.h"

namespace tz::kernels::fft {
namespace {

struct Vec8 {
  static constexpr int L = 8, B = 8;
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

  static void transpose(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
      r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
  }
  static __m256i tail(int cnt) {
    alignas(32) static const int32_t lut[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + 8 - std::min(cnt, 8)));
  }
  static void load_block(const float* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec8* out) {
    const __m256i m = tail(cnt);
    __m256 r[8];
    for (int l = 0; l < 8; ++l) {
      r[l] = _mm256_setzero_ps();
      if (l < rows) {
        r[l] = _mm256_maskload_ps(u[l] + t0, m);
        if (g[l] != nullptr) r[l] = _mm256_mul_ps(r[l], _mm256_maskload_ps(g[l] + t0, m));
      }
    }
    transpose(r);
    for (int i = 0; i < 8; ++i) out[i].v = r[i];
  }
  static void load_block_bf16(const uint16_t* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec8* out) {
    const __m256i m = tail(cnt);
    __m256 r[8];
    for (int l = 0; l < 8; ++l) {
      r[l] = _mm256_setzero_ps();
      if (l < rows) {
        alignas(16) uint16_t buf[8] = {};
        std::memcpy(buf, u[l] + t0, size_t(std::min(cnt, 8)) * 2);
        const __m256i h = _mm256_cvtepu16_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
        r[l] = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
        if (g[l] != nullptr) r[l] = _mm256_mul_ps(r[l], _mm256_maskload_ps(g[l] + t0, m));
      }
    }
    transpose(r);
    for (int i = 0; i < 8; ++i) out[i].v = r[i];
  }
  static void store_block(float* const* y, const float* const* g, int rows, int64_t t0, int cnt, const Vec8* in,
                          bool /*stream*/ = false) {
    const __m256i m = tail(cnt);
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = i < cnt ? in[i].v : _mm256_setzero_ps();
    transpose(r);
    for (int l = 0; l < rows; ++l) {
      __m256 x = r[l];
      if (g[l] != nullptr) x = _mm256_mul_ps(x, _mm256_maskload_ps(g[l] + t0, m));
      _mm256_maskstore_ps(y[l] + t0, m, x);
    }
  }
};

}  // namespace

void fftconv_r32_radix4_8rows__avx2(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec8>*>(ws);
  conv_group<Vec8>(pc, group, io, z);
}


void corr_group__avx2(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec8>*>(ws);
  conv_group<Vec8>(pc, group, io, z, /*corr=*/true);
}

void dk_group__avx2(const PlanCore& pc, int64_t h0, int rows, int64_t batch, const float* dy, const float* v, const float* u,
                   const float* w, int64_t nk, float* dk, float* ws) {
  dk_group<Vec8>(pc, h0, rows, batch, dy, v, u, w, nk, dk, reinterpret_cast<Cx<Vec8>*>(ws));
}


void conv_stage__avx2(const PlanCore& pc, int stage, int64_t group, const RowPtrs& io, float* ws, int64_t r0, int64_t r1,
                    bool corr) {
  conv_stage<Vec8>(pc, Stage(stage), group, io, reinterpret_cast<Cx<Vec8>*>(ws), r0, r1, corr);
}

void spectrum_group__avx2(const PlanCore& pc, const float* const* rows, int nrows, float* dst, float* ws) {
  filter_spectrum<Vec8>(pc, rows, nrows, dst, reinterpret_cast<Cx<Vec8>*>(ws));
}

}  // namespace tz::kernels::fft
