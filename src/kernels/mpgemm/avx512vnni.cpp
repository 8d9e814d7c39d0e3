// Int8 prefill path of the low-bit GEMM on AVX-512-VNNI (no AMX): weights decoded per call to u8
// codes, activations int8 per token, VPDPBUSD on zmm. Micro-kernel: 2 tiles (32 rows) x 6 tokens,
// 12 int32 accumulators for the current group and 12 f32 accumulators across groups; each step of
// 4 activations loads two 64-byte weight lines and broadcasts 4 activation bytes per token.
// Shared driver and the arithmetic: int8_driver.h.
#include <immintrin.h>

#include "kernels/mpgemm/int8_driver.h"

namespace tz::kernels {
namespace {

constexpr int kMr = 2, kNr = 6;

// Per token: s = max|x| / 127, q = round-to-nearest-even(x / s) (qgemm_qbg_i8_f32__ref's arithmetic).
float quantize_token(const float* x, int64_t k, int8_t* q) {
  __m512 vmax = _mm512_setzero_ps();
  for (int64_t j = 0; j < k; j += 16) {
    const __mmask16 m = k - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - j)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + j)));
  }
  const float amax = _mm512_reduce_max_ps(vmax);
  const float s = amax > 0.f ? amax / 127.f : 1.f;
  const __m512 inv = _mm512_set1_ps(1.f / s);
  for (int64_t j = 0; j < k; j += 16) {
    const __mmask16 m = k - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - j)) - 1);
    const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + j), inv));
    _mm_mask_storeu_epi8(q + j, m, _mm512_cvtsepi32_epi8(v));
  }
  return s;
}

// Tile t's bit planes -> [k_pad/4][16 rows][4] u8 codes. Line l holds columns 4l..4l+3 of each row;
// in a plane, that is nibble l/4 of byte l%4 of the row's 32-bit word, so an in-lane byte shuffle
// spreads the byte over the row's four output bytes and a bit test per byte picks its bit.
void decode_tile(const LutWeights& w, int64_t t, uint8_t* out) {
  const int P = w.planes();
  __m512i spread[4], bit[2];
  for (int j = 0; j < 4; ++j) {
    alignas(64) uint8_t v[64];
    for (int b = 0; b < 64; ++b) v[b] = uint8_t((b % 16) / 4 * 4 + j);
    spread[j] = _mm512_load_si512(v);
  }
  for (int h = 0; h < 2; ++h) {
    alignas(64) uint8_t v[64];
    for (int b = 0; b < 64; ++b) v[b] = uint8_t(1u << (b % 4 + 4 * h));
    bit[h] = _mm512_load_si512(v);
  }
  for (int64_t c = 0; c < w.k_pad() / 32; ++c) {
    const uint8_t* pl = chunk_planes(w, t, c);
    __m512i planes[8];
    for (int p = 0; p < P; ++p) planes[p] = _mm512_loadu_si512(pl + p * 64);
    for (int l = 0; l < 8; ++l) {
      __m512i code = _mm512_setzero_si512();
      for (int p = 0; p < P; ++p) {
        const __mmask64 m = _mm512_test_epi8_mask(_mm512_shuffle_epi8(planes[p], spread[l % 4]), bit[l / 4]);
        code = _mm512_mask_blend_epi8(m, code, _mm512_or_si512(code, _mm512_set1_epi8(char(1 << p))));
      }
      _mm512_store_si512(out + (c * 8 + l) * 64, code);
    }
  }
}

// One step of 4 activations of the full micro-kernel: s[r][j] += VPDPBUSD(w_r, broadcast(x_j)),
// x_j = x + j·kq. Assembly because gcc 12 copies each of the 12 loop-carried accumulators to
// another register and back in every iteration (24 extra moves per 12 products: half speed).
// The weight lines and the broadcast use fixed registers (clobbers) to stay within 30 operands.
inline void line_2x6(const uint8_t* wa, const uint8_t* wb, const int8_t* x, int64_t kq, __m512i (&s)[2][6]) {
  const int8_t* x3 = x + 3 * kq;
#define TZ_TOKEN(J, ADDR)                    \
  "vpbroadcastd " ADDR ", %%zmm31\n\t"      \
  "vpdpbusd %%zmm31, %%zmm29, %[s0" #J "]\n\t" \
  "vpdpbusd %%zmm31, %%zmm30, %[s1" #J "]\n\t"
  __asm__("vmovdqa64 (%[wa]), %%zmm29\n\t"
          "vmovdqa64 (%[wb]), %%zmm30\n\t"
          TZ_TOKEN(0, "(%[x])") TZ_TOKEN(1, "(%[x],%[kq],1)") TZ_TOKEN(2, "(%[x],%[kq],2)")
          TZ_TOKEN(3, "(%[x3])") TZ_TOKEN(4, "(%[x3],%[kq],1)") TZ_TOKEN(5, "(%[x3],%[kq],2)")
          : [s00] "+v"(s[0][0]), [s01] "+v"(s[0][1]), [s02] "+v"(s[0][2]), [s03] "+v"(s[0][3]), [s04] "+v"(s[0][4]),
            [s05] "+v"(s[0][5]), [s10] "+v"(s[1][0]), [s11] "+v"(s[1][1]), [s12] "+v"(s[1][2]), [s13] "+v"(s[1][3]),
            [s14] "+v"(s[1][4]), [s15] "+v"(s[1][5])
          : [wa] "r"(wa), [wb] "r"(wb), [x] "r"(x), [x3] "r"(x3), [kq] "r"(kq)
          : "xmm29", "xmm30", "xmm31", "memory");
#undef TZ_TOKEN
}

// Y[i0 .. i0+NR, rows of tiles t .. t+MR] from decoded tiles wt (tile_bytes apart).
template <int MR, int NR>
void block(const LutWeights& w, const Int8Acts& a, const Int8Coefs& c, const uint8_t* wt, size_t tile_bytes, int64_t t,
           int64_t i0, float* y, int64_t ldy) {
  const int64_t ng = a.ng, G = w.group_cols(), lines = w.k_pad() / 4;
  const int8_t* xr[NR];
  for (int j = 0; j < NR; ++j) xr[j] = a.row(i0 + j);
  __m512 f[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) f[r][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    __m512i s[MR][NR];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) s[r][j] = _mm512_setzero_si512();
    const int64_t l1 = std::min(lines, (g + 1) * G / 4);
    for (int64_t l = g * G / 4; l < l1; ++l) {
      if constexpr (MR == 2 && NR == 6) {
        line_2x6(wt + size_t(l) * 64, wt + tile_bytes + size_t(l) * 64, xr[0] + 4 * l, a.kq, s);
        continue;
      }
      __m512i wv[MR];
      for (int r = 0; r < MR; ++r) wv[r] = _mm512_load_si512(wt + size_t(r) * tile_bytes + size_t(l) * 64);
      for (int j = 0; j < NR; ++j) {
        int32_t v;
        std::memcpy(&v, xr[j] + 4 * l, 4);
        const __m512i av = _mm512_set1_epi32(v);
        for (int r = 0; r < MR; ++r) s[r][j] = _mm512_dpbusd_epi32(s[r][j], wv[r], av);
      }
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 ws = _mm512_loadu_ps(c.scales(t + r, g, ng)), wz = _mm512_loadu_ps(c.offsets(t + r, g, ng));
      for (int j = 0; j < NR; ++j) {
        f[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][j]), ws, f[r][j]);
        f[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(a.sum[size_t((i0 + j) * ng + g)]), wz, f[r][j]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    const int64_t m0 = (t + r) * 16, rows = std::min<int64_t>(16, w.rows() - m0);
    const __mmask16 mk = __mmask16((1u << rows) - 1u);
    for (int j = 0; j < NR; ++j)
      _mm512_mask_storeu_ps(y + (i0 + j) * ldy + m0, mk, _mm512_mul_ps(f[r][j], _mm512_set1_ps(a.s[size_t(i0 + j)])));
  }
}

template <int MR>
void block_tokens(const LutWeights& w, const Int8Acts& a, const Int8Coefs& c, const uint8_t* wt, size_t tb, int64_t t,
                  int64_t i0, int64_t ni, float* y, int64_t ldy) {
  switch (ni) {
    case 6: return block<MR, 6>(w, a, c, wt, tb, t, i0, y, ldy);
    case 5: return block<MR, 5>(w, a, c, wt, tb, t, i0, y, ldy);
    case 4: return block<MR, 4>(w, a, c, wt, tb, t, i0, y, ldy);
    case 3: return block<MR, 3>(w, a, c, wt, tb, t, i0, y, ldy);
    case 2: return block<MR, 2>(w, a, c, wt, tb, t, i0, y, ldy);
    default: return block<MR, 1>(w, a, c, wt, tb, t, i0, y, ldy);
  }
}

}  // namespace

void qgemm_qbg_i8_f32_32x6__avx512vnni(const LutWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  int8_gemm_driver(w, x, n, ldx, kNr, quantize_token, decode_tile,
                   [&](const Int8Acts& a, const Int8Coefs& c, const uint8_t* tiles, size_t tb, int64_t t0, int64_t nt,
                       int64_t i0, int64_t ni) {
                     for (int64_t u = 0; u < nt; u += kMr) {
                       const uint8_t* wt = tiles + size_t(u) * tb;
                       if (nt - u >= kMr)
                         block_tokens<kMr>(w, a, c, wt, tb, t0 + u, i0, ni, y, ldy);
                       else
                         block_tokens<1>(w, a, c, wt, tb, t0 + u, i0, ni, y, ldy);
                     }
                   });
}

}  // namespace tz::kernels
