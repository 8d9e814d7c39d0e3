// AVX-512 FFT convolution: 16 rows per group, one per zmm lane, so the radix-4 Stockham butterflies
// are vertical arithmetic with no shuffles (recursive.h, fftconv_impl.h).
#include <immintrin.h>

#include "kernels/fft/fft.h"
#include "kernels/transpose16_avx512.h"

namespace tz::kernels::fft {
namespace {

struct Vec16 {
  static constexpr int L = 16, B = 16;
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

  // r[i] = row i's 16 samples  ->  r[i] = sample i of the 16 rows.
  static void transpose(__m512 r[16]) { transpose16x16_ps(r); }
  static void load_block(const float* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec16* out) {
    const __mmask16 m = cnt >= 16 ? __mmask16(0xffff) : __mmask16((1u << cnt) - 1);
    __m512 r[16];
    for (int l = 0; l < 16; ++l) {
      r[l] = _mm512_setzero_ps();
      if (l < rows) {
        r[l] = _mm512_maskz_loadu_ps(m, u[l] + t0);
        if (g[l] != nullptr) r[l] = _mm512_mul_ps(r[l], _mm512_maskz_loadu_ps(m, g[l] + t0));
      }
    }
    transpose(r);
    for (int i = 0; i < 16; ++i) out[i].v = r[i];
  }
  static void load_block_bf16(const uint16_t* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec16* out) {
    const __mmask16 m = cnt >= 16 ? __mmask16(0xffff) : __mmask16((1u << cnt) - 1);
    __m512 r[16];
    for (int l = 0; l < 16; ++l) {
      r[l] = _mm512_setzero_ps();
      if (l < rows) {
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, u[l] + t0));
        r[l] = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));  // bf16 -> f32 is a shift
        if (g[l] != nullptr) r[l] = _mm512_mul_ps(r[l], _mm512_maskz_loadu_ps(m, g[l] + t0));
      }
    }
    transpose(r);
    for (int i = 0; i < 16; ++i) out[i].v = r[i];
  }
  // stream: full 64-byte lines of 64-byte aligned rows go around the caches (RowPtrs::stream).
  static void store_block(float* const* y, const float* const* g, int rows, int64_t t0, int cnt, const Vec16* in,
                          bool stream = false) {
    const __mmask16 m = cnt >= 16 ? __mmask16(0xffff) : __mmask16((1u << cnt) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; ++i) r[i] = i < cnt ? in[i].v : _mm512_setzero_ps();
    transpose(r);
    for (int l = 0; l < rows; ++l) {
      __m512 x = r[l];
      if (g[l] != nullptr) x = _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, g[l] + t0));
      if (stream && cnt == 16) _mm512_stream_ps(y[l] + t0, x);
      else _mm512_mask_storeu_ps(y[l] + t0, m, x);
    }
  }
};

}  // namespace

void fftconv_r32_radix4_16rows__avx512(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec16>*>(ws);
  conv_group<Vec16>(pc, group, io, z);
}


void corr_group__avx512(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec16>*>(ws);
  conv_group<Vec16>(pc, group, io, z, /*corr=*/true);
}

void dk_group__avx512(const PlanCore& pc, int64_t h0, int rows, int64_t batch, const float* dy, const float* v, const float* u,
                   const float* w, int64_t nk, float* dk, float* ws) {
  dk_group<Vec16>(pc, h0, rows, batch, dy, v, u, w, nk, dk, reinterpret_cast<Cx<Vec16>*>(ws));
}


void conv_stage__avx512(const PlanCore& pc, int stage, int64_t group, const RowPtrs& io, float* ws, int64_t r0, int64_t r1,
                    bool corr) {
  conv_stage<Vec16>(pc, Stage(stage), group, io, reinterpret_cast<Cx<Vec16>*>(ws), r0, r1, corr);
}

void spectrum_group__avx512(const PlanCore& pc, const float* const* rows, int nrows, float* dst, float* ws) {
  filter_spectrum<Vec16>(pc, rows, nrows, dst, reinterpret_cast<Cx<Vec16>*>(ws));
}

}  // namespace tz::kernels::fft
