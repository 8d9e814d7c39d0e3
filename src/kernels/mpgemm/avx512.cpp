// AVX-512 (F/BW/VL/DQ) parts of the low-bit GEMM family: the LUT table builder and the
// dequantizing baseline.
//
// Dequant baseline: decode 32 codes to bytes (crumbs/nibbles by variable shifts, high bits from
// planes with VPMOVM2B), widen to f32, FMA with the activations — what dequantizing engines do.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/mpgemm/mpgemm.h"

namespace tz::kernels {
namespace {

// Sign patterns of the 16 table entries: entry idx takes +a_t where bit t of idx is set.
struct Signs {
  __m512 s[4];
  Signs() {
    for (int t = 0; t < 4; ++t) {
      alignas(64) float v[16];
      for (int i = 0; i < 16; ++i) v[i] = (i >> t & 1) ? 1.f : -1.f;
      s[t] = _mm512_load_ps(v);
    }
  }
};

}  // namespace

void luttables_g4_f32__avx512(const float* x, int64_t k, int64_t k_pad, int64_t scale_block, LutMode mode,
                        const float* ts, void* tab) {
  static const Signs sg;
  for (int64_t q = 0; q < k_pad / 4; ++q) {
    float a[4];
    if (4 * q + 4 <= k) std::memcpy(a, x + 4 * q, 16);
    else for (int t = 0; t < 4; ++t) a[t] = 4 * q + t < k ? x[4 * q + t] : 0.f;
    // Same operation order as the scalar builder (±a0, then + ±a1 ...): identical tables.
    __m512 s = _mm512_mul_ps(sg.s[0], _mm512_set1_ps(a[0]));
    s = _mm512_fmadd_ps(sg.s[1], _mm512_set1_ps(a[1]), s);
    s = _mm512_fmadd_ps(sg.s[2], _mm512_set1_ps(a[2]), s);
    s = _mm512_fmadd_ps(sg.s[3], _mm512_set1_ps(a[3]), s);
    if (mode == LutMode::Exact) {
      _mm512_storeu_ps(static_cast<float*>(tab) + q * 16, s);
    } else {
      const __m512 scaled = _mm512_mul_ps(s, _mm512_set1_ps(1.0f / ts[4 * q / scale_block]));
      const __m128i b = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(scaled));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<int8_t*>(tab) + q * 16), b);
    }
  }
}

// ------------------------------------------------------------------ dequant baseline

namespace {

// 32 codes of one block as bytes.
inline __m256i decode32(const uint8_t* blk, int bits, int lb) {
  __m256i q = _mm256_setzero_si256();
  if (lb == 2) {
    // qword i holds crumbs at shift 2i: byte j of qword i = value j + 8i.
    int64_t crumbs;
    std::memcpy(&crumbs, blk, 8);  // blocks are byte-aligned
    const __m256i b = _mm256_set1_epi64x(crumbs);
    q = _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 2, 4, 6)), _mm256_set1_epi8(3));
  } else if (lb == 4) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
    q = _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
  }
  for (int p = 0; p < bits - lb; ++p) {
    uint32_t plane;
    std::memcpy(&plane, blk + lb * 4 + 4 * p, 4);
    q = _mm256_or_si256(q, _mm256_and_si256(_mm256_movm_epi8(__mmask32(plane)), _mm256_set1_epi8(char(1 << (lb + p)))));
  }
  return q;
}

// RB rows at a time, NB activation columns: each 16-value slice of x is loaded once for RB rows,
// each dequantized weight vector (s·q − s·z, one FMA) is used by NB columns, and the horizontal
// sum happens once per row, not per group.
template <int RB, int NB>
void dequant_block(const DequantArgs& a, int64_t r0) {
  const DequantWeights& w = *a.w;
  const int bits = w.format().bits, lb = bits == 1 ? 0 : bits < 4 ? 2 : 4;
  const float half = lut_half(w.format());
  __m512 acc[RB][NB];
  for (int i = 0; i < RB; ++i)
    for (int n = 0; n < NB; ++n) acc[i][n] = _mm512_setzero_ps();
  const int64_t nb = w.blocks(), per_group = w.group_cols() / 32;
  const int64_t left = w.cols() - (nb - 1) * 32;  // values in the last block
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t g = b / per_group, k = b * 32;
    const __mmask16 m0 = b + 1 < nb || left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __mmask16 m1 = b + 1 < nb || left >= 32 ? __mmask16(0xffff) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
    __m512 x0[NB], x1[NB];
    for (int n = 0; n < NB; ++n) {
      x0[n] = _mm512_maskz_loadu_ps(m0, a.x[n] + k);
      x1[n] = _mm512_maskz_loadu_ps(m1, a.x[n] + k + 16);
    }
    for (int i = 0; i < RB; ++i) {
      const int64_t r = r0 + i;
      const float sc = w.scales(r)[g];
      const float z = w.format().ternary ? 1.f : w.format().symmetric ? half : w.zeros(r)[g];
      const __m512 s = _mm512_set1_ps(sc), sz = _mm512_set1_ps(sc * z);
      const __m256i q = decode32(w.row(r) + size_t(b) * w.block_bytes(), bits, lb);
      const __m512 w0 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q))), s, sz);
      const __m512 w1 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1))), s, sz);
      for (int n = 0; n < NB; ++n) acc[i][n] = _mm512_fmadd_ps(w1, x1[n], _mm512_fmadd_ps(w0, x0[n], acc[i][n]));
    }
  }
  for (int i = 0; i < RB; ++i)
    for (int n = 0; n < NB; ++n) a.y[n][r0 + i] = _mm512_reduce_add_ps(acc[i][n]);
}

template <int NB>
void dequant_rows(const DequantArgs& a) {
  int64_t r = a.r0;
  for (; r + 4 <= a.r1; r += 4) dequant_block<4, NB>(a, r);
  for (; r < a.r1; ++r) dequant_block<1, NB>(a, r);
}

}  // namespace

void dqgemm_qb_f32_f32_4x4__avx512(const DequantArgs& a) {
  switch (a.nb) {
    case 1: dequant_rows<1>(a); break;
    case 2: dequant_rows<2>(a); break;
    case 3: dequant_rows<3>(a); break;
    default: dequant_rows<4>(a); break;
  }
}

}  // namespace tz::kernels
