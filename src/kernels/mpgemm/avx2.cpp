// AVX2 LUT kernel (fast mode) on the same packed layout as the AVX-512 one. AVX2 has no 64-entry
// byte permute, so each of the four quad tables is looked up with PSHUFB on indices whose other
// byte positions have bit 7 set (PSHUFB writes 0 there) and the four results are OR-ed; PMADDUBSW
// by the plane weight and PMADDWD by 1 then sum each row's four bytes into its int32 lane.
// Exact mode (f32 tables) looks up with VPERMPS pairs (see lut_half_tile_exact).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/convert.h"

namespace tz::kernels {
namespace {


inline __m256 load_scales8(const uint8_t* p, int sb) {
  return sb == 4 ? _mm256_loadu_ps(reinterpret_cast<const float*>(p))
                 : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// End of a scale group for 8 rows: yacc += ws·½·acc (+ ws·(half − z)·Σa for offset formats).
template <int NB>
inline void group_epilogue(const LutWeights& w, const uint8_t* scales, int half_tile, const LutColumn* cols, int64_t g,
                           const __m256* acc, __m256* yacc) {
  const int sb = w.scale_bytes();
  const __m256 ws = load_scales8(scales + 8 * half_tile * sb, sb);
  const __m256 coef = _mm256_mul_ps(ws, _mm256_set1_ps(0.5f));
  const bool zero_term = !w.format().symmetric || w.format().ternary;
  __m256 zc = _mm256_setzero_ps();
  if (zero_term) {
    const __m256 z = w.has_zeros() ? load_scales8(scales + 16 * sb + 8 * half_tile * sb, sb) : _mm256_set1_ps(1.f);
    zc = _mm256_mul_ps(ws, _mm256_sub_ps(_mm256_set1_ps(lut_half(w.format())), z));
  }
  for (int n = 0; n < NB; ++n) {
    yacc[n] = _mm256_fmadd_ps(acc[n], coef, yacc[n]);
    if (zero_term) yacc[n] = _mm256_fmadd_ps(zc, _mm256_set1_ps(cols[n].sa[g]), yacc[n]);
  }
}

template <int NB>
inline void store_rows8(const LutWeights& w, int64_t t, int half_tile, const __m256* yacc, float* const* y) {
  const int64_t r0 = t * 16 + 8 * half_tile, rows = std::min<int64_t>(8, w.rows() - r0);
  for (int n = 0; n < NB; ++n) {
    alignas(32) float out[8];
    _mm256_store_ps(out, yacc[n]);
    for (int64_t i = 0; i < rows; ++i) y[n][r0 + i] = out[i];
  }
}

// Lookup of 32 index bytes (values 0..15; byte 4r+j uses table j) in four 16-entry tables.
inline __m256i lookup4(__m256i idx, const __m256i* tab, const __m256i* off) {
  __m256i r = _mm256_shuffle_epi8(tab[0], _mm256_or_si256(idx, off[0]));
  for (int j = 1; j < 4; ++j) r = _mm256_or_si256(r, _mm256_shuffle_epi8(tab[j], _mm256_or_si256(idx, off[j])));
  return r;
}

template <int NB>
void lut_half_tile(const LutWeights& w, int64_t t, int half_tile, const LutColumn* cols, float* const* y) {
  // Rows 8*half_tile .. +8 of tile t: bytes [32*half_tile, +32) of each 64-byte plane vector.
  const int P = w.planes();
  const __m256i nib = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
  __m256i off[4];
  for (int j = 0; j < 4; ++j) {
    alignas(32) uint8_t o[32];
    for (int b = 0; b < 32; ++b) o[b] = (b % 4 == j) ? 0 : 0x80;
    off[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(o));
  }
  __m256 yacc[NB];
  for (int n = 0; n < NB; ++n) yacc[n] = _mm256_setzero_ps();
  const uint8_t* tile = w.tile(t);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const uint8_t* v = tile + w.group_offset(g);
    const int64_t nc = w.group_chunks(g), q0 = g * w.group_cols() / 4;
    __m256 facc[NB];
    for (int n = 0; n < NB; ++n) facc[n] = _mm256_setzero_ps();
    const int64_t cpb = lut_scale_block(w) / 32;  // chunks per table scale
    __m256i acc[NB];
    for (int n = 0; n < NB; ++n) acc[n] = _mm256_setzero_si256();
    for (int64_t c = 0; c < nc; ++c) {
      __m256i tlo[NB][4], thi[NB][4];
      for (int n = 0; n < NB; ++n) {
        const auto* tb = static_cast<const int8_t*>(cols[n].tab) + (q0 + c * 8) * 16;
        for (int j = 0; j < 4; ++j) {
          tlo[n][j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb + 16 * j)));
          thi[n][j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb + 64 + 16 * j)));
        }
      }
      for (int p = 0; p < P; ++p, v += 64) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 32 * half_tile));
        const __m256i lo = _mm256_and_si256(wv, nib), hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
        const __m256i pw = _mm256_set1_epi8(char(1 << p));
        for (int n = 0; n < NB; ++n) {
          const __m256i sl = _mm256_maddubs_epi16(pw, lookup4(lo, tlo[n], off));
          const __m256i sh = _mm256_maddubs_epi16(pw, lookup4(hi, thi[n], off));
          acc[n] = _mm256_add_epi32(acc[n], _mm256_add_epi32(_mm256_madd_epi16(sl, ones16), _mm256_madd_epi16(sh, ones16)));
        }
      }
      if ((c + 1) % cpb == 0 || c == nc - 1)
        for (int n = 0; n < NB; ++n) {
          facc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[n]), _mm256_set1_ps(cols[n].ts[(q0 / 8 + c) / cpb]), facc[n]);
          acc[n] = _mm256_setzero_si256();
        }
    }
    group_epilogue<NB>(w, v, half_tile, cols, g, facc, yacc);
  }
  store_rows8<NB>(w, t, half_tile, yacc, y);
}

// Exact mode: f32 tables. A 16-entry lookup is two VPERMPS over the table halves, blended on
// bit 3 of the index; dword lane r of a 32-byte plane vector holds row r's four quad nibbles.
template <int NB>
void lut_half_tile_exact(const LutWeights& w, int64_t t, int half_tile, const LutColumn* cols, float* const* y) {
  const int P = w.planes();
  const __m256i nib = _mm256_set1_epi32(0x0F);
  __m256 yacc[NB];
  for (int n = 0; n < NB; ++n) yacc[n] = _mm256_setzero_ps();
  const auto lookup = [](const float* tab, __m256i idx) {
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), idx);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(tab + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign
  };
  const uint8_t* tile = w.tile(t);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const uint8_t* v = tile + w.group_offset(g);
    const int64_t nc = w.group_chunks(g), q0 = g * w.group_cols() / 4;
    __m256 acc[NB];
    for (int n = 0; n < NB; ++n) acc[n] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; ++c)
      for (int p = 0; p < P; ++p, v += 64) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 32 * half_tile));
        const __m256 pwf = _mm256_set1_ps(float(1 << p));
        for (int j = 0; j < 4; ++j) {
          const __m256i ilo = _mm256_and_si256(_mm256_srli_epi32(wv, 8 * j), nib);
          const __m256i ihi = _mm256_and_si256(_mm256_srli_epi32(wv, 8 * j + 4), nib);
          for (int n = 0; n < NB; ++n) {
            const float* tb = static_cast<const float*>(cols[n].tab) + (q0 + c * 8 + j) * 16;
            acc[n] = _mm256_fmadd_ps(_mm256_add_ps(lookup(tb, ilo), lookup(tb + 64, ihi)), pwf, acc[n]);
          }
        }
      }
    group_epilogue<NB>(w, v, half_tile, cols, g, acc, yacc);
  }
  store_rows8<NB>(w, t, half_tile, yacc, y);
}

template <int NB>
void lut_tiles(const LutArgs& a) {
  for (int64_t t = a.t0; t < a.t1; ++t)
    for (int h = 0; h < 2; ++h)
      if (t * 16 + 8 * h < a.w->rows()) {
        if (a.mode == LutMode::Fast) lut_half_tile<NB>(*a.w, t, h, a.cols, a.y);
        else lut_half_tile_exact<NB>(*a.w, t, h, a.cols, a.y);
      }
}

}  // namespace

void lutgemm_qbg4_f32_f32_16x4__avx2(const LutArgs& a) {
  switch (a.nb) {
    case 1: lut_tiles<1>(a); break;
    case 2: lut_tiles<2>(a); break;
    case 3: lut_tiles<3>(a); break;
    default: lut_tiles<4>(a); break;
  }
}

}  // namespace tz::kernels
