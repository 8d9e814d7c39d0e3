// AVX-512 VBMI + VNNI LUT kernel of the low-bit GEMM (decode and short prefill).
//
// LUT (fast): a 64-byte weight vector holds, for one bit plane, 16 rows x 32 activations as
// nibbles: byte 4r+j = (quad j bits, quad 4+j bits) of row r. VPERMB looks each nibble up in a
// 64-byte register holding four quads' 16-entry int8 tables (index = j*16 + nibble), so the four
// bytes of a dword are the same row's four quads; VPDPBUSD then sums them, times the plane weight
// 2^p, straight into that row's int32 lane. No dequantization, no int16 overflow handling.
// Exact mode uses f32 tables and VPERMPS (16-entry f32 table per register) on the same layout.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/mpgemm/mpgemm.h"

namespace tz::kernels {
namespace {

inline __m512 load_scales16(const uint8_t* p, int sb) {
  return sb == 4 ? _mm512_loadu_ps(p) : _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

constexpr int kPrefetchBytes = 2048;

// TT tiles at once (decode uses 2: two independent weight streams and twice the work per table
// load), NB activation columns.
template <int NB, int TT>
void lut_tile_fast(const LutWeights& w, int64_t t, const LutColumn* cols, float* const* y) {
  const int P = w.planes(), sb = w.scale_bytes();
  const bool zero_term = !w.format().symmetric || w.format().ternary;
  const __m512 half = _mm512_set1_ps(lut_half(w.format()));
  const __m512i pos = _mm512_set1_epi32(0x30201000);  // byte j of each dword -> j*16
  const __m512i nib = _mm512_set1_epi8(0x0F);
  __m512i pw[8];
  for (int p = 0; p < 8; ++p) pw[p] = _mm512_set1_epi8(char(1 << p));
  __m512 yacc[TT][NB];
  for (int u = 0; u < TT; ++u)
    for (int n = 0; n < NB; ++n) yacc[u][n] = _mm512_setzero_ps();
  for (int64_t g = 0; g < w.groups(); ++g) {
    const uint8_t* v[TT];
    for (int u = 0; u < TT; ++u) v[u] = w.tile(t + u) + w.group_offset(g);
    const int64_t nc = w.group_chunks(g), q0 = g * w.group_cols() / 4;
    __m512 facc[TT][NB];
    for (int u = 0; u < TT; ++u)
      for (int n = 0; n < NB; ++n) facc[u][n] = _mm512_setzero_ps();
    const int64_t cpb = lut_scale_block(w) / 32;  // chunks per table scale
    // Two accumulators per tile and column (low / high nibbles): independent VPDPBUSD chains.
    __m512i acc[TT][NB][2];
    for (int u = 0; u < TT; ++u)
      for (int n = 0; n < NB; ++n) acc[u][n][0] = acc[u][n][1] = _mm512_setzero_si512();
    for (int64_t c = 0; c < nc; ++c) {
      __m512i t0[NB], t1[NB];
      for (int n = 0; n < NB; ++n) {
        const auto* tb = static_cast<const int8_t*>(cols[n].tab) + (q0 + c * 8) * 16;
        t0[n] = _mm512_loadu_si512(tb);
        t1[n] = _mm512_loadu_si512(tb + 64);
      }
      for (int p = 0; p < P; ++p)
        for (int u = 0; u < TT; ++u, v[u - 1] += 64) {
          // Decode streams weights from DRAM: ask for lines well ahead so more misses are in flight.
          _mm_prefetch(reinterpret_cast<const char*>(v[u] + kPrefetchBytes), _MM_HINT_T0);
          const __m512i wv = _mm512_loadu_si512(v[u]);
          const __m512i lo = _mm512_ternarylogic_epi32(wv, nib, pos, 0xEA);                        // (w & 15) | pos
          const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(wv, 4), nib, pos, 0xEA);  // (w >> 4 & 15) | pos
          for (int n = 0; n < NB; ++n) {
            acc[u][n][0] = _mm512_dpbusd_epi32(acc[u][n][0], pw[p], _mm512_permutexvar_epi8(lo, t0[n]));
            acc[u][n][1] = _mm512_dpbusd_epi32(acc[u][n][1], pw[p], _mm512_permutexvar_epi8(hi, t1[n]));
          }
        }
      if ((c + 1) % cpb == 0 || c == nc - 1)
        for (int n = 0; n < NB; ++n) {  // close this block of the table scale
          const __m512 ts = _mm512_set1_ps(cols[n].ts[(q0 / 8 + c) / cpb]);
          for (int u = 0; u < TT; ++u) {
            facc[u][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc[u][n][0], acc[u][n][1])), ts, facc[u][n]);
            acc[u][n][0] = acc[u][n][1] = _mm512_setzero_si512();
          }
        }
    }
    for (int u = 0; u < TT; ++u) {
      const __m512 ws = load_scales16(v[u], sb);
      __m512 zc = _mm512_setzero_ps();
      if (zero_term) {
        const __m512 z = w.has_zeros() ? load_scales16(v[u] + 16 * sb, sb) : _mm512_set1_ps(1.f);
        zc = _mm512_mul_ps(ws, _mm512_sub_ps(half, z));
      }
      const __m512 coef = _mm512_mul_ps(ws, _mm512_set1_ps(0.5f));
      for (int n = 0; n < NB; ++n) {
        yacc[u][n] = _mm512_fmadd_ps(facc[u][n], coef, yacc[u][n]);
        if (zero_term) yacc[u][n] = _mm512_fmadd_ps(zc, _mm512_set1_ps(cols[n].sa[g]), yacc[u][n]);
      }
    }
  }
  for (int u = 0; u < TT; ++u) {
    const int64_t rows = std::min<int64_t>(16, w.rows() - (t + u) * 16);
    const __mmask16 m = __mmask16((1u << rows) - 1u);
    for (int n = 0; n < NB; ++n) _mm512_mask_storeu_ps(y[n] + (t + u) * 16, m, yacc[u][n]);
  }
}

template <int NB>
void lut_tile_exact(const LutWeights& w, int64_t t, const LutColumn* cols, float* const* y) {
  const int P = w.planes(), sb = w.scale_bytes();
  const bool zero_term = !w.format().symmetric || w.format().ternary;
  const __m512 half = _mm512_set1_ps(lut_half(w.format()));
  const __m512i nib = _mm512_set1_epi32(0x0F);
  __m512 yacc[NB];
  for (int n = 0; n < NB; ++n) yacc[n] = _mm512_setzero_ps();
  const uint8_t* tile = w.tile(t);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const uint8_t* v = tile + w.group_offset(g);
    const int64_t nc = w.group_chunks(g), q0 = g * w.group_cols() / 4;
    __m512 acc[NB];
    for (int n = 0; n < NB; ++n) acc[n] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; ++c)
      for (int p = 0; p < P; ++p, v += 64) {
        const __m512i wv = _mm512_loadu_si512(v);
        const __m512 pwf = _mm512_set1_ps(float(1 << p));
        for (int j = 0; j < 4; ++j) {
          const __m512i ilo = _mm512_and_si512(_mm512_srli_epi32(wv, 8 * j), nib);
          const __m512i ihi = _mm512_and_si512(_mm512_srli_epi32(wv, 8 * j + 4), nib);
          for (int n = 0; n < NB; ++n) {
            const auto* tb = static_cast<const float*>(cols[n].tab) + (q0 + c * 8 + j) * 16;
            const __m512 s = _mm512_add_ps(_mm512_permutexvar_ps(ilo, _mm512_loadu_ps(tb)),
                                           _mm512_permutexvar_ps(ihi, _mm512_loadu_ps(tb + 64)));
            acc[n] = _mm512_fmadd_ps(s, pwf, acc[n]);
          }
        }
      }
    const __m512 ws = load_scales16(v, sb);
    __m512 zc = _mm512_setzero_ps();
    if (zero_term) {
      const __m512 z = w.has_zeros() ? load_scales16(v + 16 * sb, sb) : _mm512_set1_ps(1.f);
      zc = _mm512_mul_ps(ws, _mm512_sub_ps(half, z));
    }
    for (int n = 0; n < NB; ++n) {
      yacc[n] = _mm512_fmadd_ps(acc[n], _mm512_mul_ps(ws, _mm512_set1_ps(0.5f)), yacc[n]);
      if (zero_term) yacc[n] = _mm512_fmadd_ps(zc, _mm512_set1_ps(cols[n].sa[g]), yacc[n]);
    }
  }
  const int64_t rows = std::min<int64_t>(16, w.rows() - t * 16);
  const __mmask16 m = __mmask16((1u << rows) - 1u);
  for (int n = 0; n < NB; ++n) _mm512_mask_storeu_ps(y[n] + t * 16, m, yacc[n]);
}

template <int NB>
void lut_tiles(const LutArgs& a) {
  int64_t t = a.t0;
  if (a.mode == LutMode::Fast) {
    if constexpr (NB == 1)
      for (; t + 2 <= a.t1; t += 2) lut_tile_fast<1, 2>(*a.w, t, a.cols, a.y);
    for (; t < a.t1; ++t) lut_tile_fast<NB, 1>(*a.w, t, a.cols, a.y);
  } else {
    for (; t < a.t1; ++t) lut_tile_exact<NB>(*a.w, t, a.cols, a.y);
  }
}

}  // namespace

void lutgemm_qbg4_f32_f32_16x4__avx512vbmi(const LutArgs& a) {
  switch (a.nb) {
    case 1: lut_tiles<1>(a); break;
    case 2: lut_tiles<2>(a); break;
    case 3: lut_tiles<3>(a); break;
    default: lut_tiles<4>(a); break;
  }
}

}  // namespace tz::kernels
