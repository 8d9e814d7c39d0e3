// AVX-512-BF16 GEMM kernels and the bf16 pair-panel packers.
//
// Pair panels (the layout VDPBF16PS and AMX's TDPBF16PS both read): W [m, k] as slabs of 32 rows;
// a slab is [half (2)][k pair p][col (16)][2 bf16] with k rounded up to 32 and zeros past m and k,
// so one 64-byte vector holds pair p of 16 output columns, and 16 consecutive pairs are one AMX tile.
//
// 12x32 kernel (prefill, packed weights): 12 tokens × 32 output columns in 24 zmm accumulators;
// per k pair it loads the slab's two vectors once and broadcasts each token's pair (32 bits) once,
// 24 VDPBF16PS per 14 loads. X is copied once into a zero-padded buffer, so k needs no edge code.
//
// 4x4 kernel (dot-product form, decode / unpacked small n): VDPBF16PS multiplies 32 bf16 pairs and
// accumulates into 16 f32 lanes; a 4 x 4 block of (x row, w row) pairs keeps 16 zmm accumulators.
// Masked loads handle any k (zero pairs add nothing). Also the small-n path of the AMX variant.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "kernels/mask_avx512.h"
#include "kernels/transpose16_avx512.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {

constexpr int64_t kKBlock = 32;  // k values per packed block (16 pairs)
inline int64_t k_blocks(int64_t k) { return (k + kKBlock - 1) / kKBlock; }

inline __mmask32 mask32(int64_t left) { return left >= 32 ? ~__mmask32(0) : (__mmask32(1) << left) - 1; }

template <int NB, int MB>
void block(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t k, float* y, int64_t ldy) {
  __m512 acc[NB][MB];
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p += 32) {
    const __mmask32 m = mask32(k - p);
    __m512bh wv[MB];
    for (int j = 0; j < MB; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j * ldw + p);
    for (int i = 0; i < NB; ++i) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * ldx + p);
      for (int j = 0; j < MB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}

template <int NB>
void row_block(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t k, float* y,
               int64_t ldy, int64_t m0, int64_t m1) {
  int64_t j = m0;
  for (; j + 4 <= m1; j += 4) block<NB, 4>(x, ldx, w + j * ldw, ldw, k, y + j, ldy);
  switch (m1 - j) {
    case 3: block<NB, 3>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    case 2: block<NB, 2>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    case 1: block<NB, 1>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    default: break;
  }
}

}  // namespace

// ------------------------------------------------------------------ pair panels

int64_t bf16_pair_slab_elems(int64_t k) { return 2 * k_blocks(k) * 16 * kKBlock; }
int64_t bf16_packed_elems(int64_t m, int64_t k) { return ((m + 31) / 32) * bf16_pair_slab_elems(k); }

void bf16_pack_pair_slab(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, int64_t r0, uint16_t* out) {
  const int64_t kb = k_blocks(k);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t b = 0; b < kb; ++b) {
      // 16 rows x 32 values = 16 rows x 16 pairs (dwords); transposed, row p holds pair p of every row.
      __m512i r[16];
      const int64_t k0 = b * kKBlock;
      const __mmask32 km = k - k0 >= 32 ? ~__mmask32(0) : (__mmask32(1) << (k - k0)) - 1;
      for (int c = 0; c < 16; ++c) {
        const int64_t row = r0 + h * 16 + c;
        r[c] = row < m ? _mm512_maskz_loadu_epi16(km, w + row * ldw + k0) : _mm512_setzero_si512();
      }
      transpose16x16_epi32(r);
      uint16_t* dst = out + (h * kb + b) * 16 * kKBlock;
      for (int p = 0; p < 16; ++p) _mm512_storeu_si512(dst + p * kKBlock, r[p]);
    }
}

void bf16_pack_pairs(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, uint16_t* out) {
  const int64_t slabs = (m + 31) / 32;
  parallel_for(slabs, [&](int64_t s, int) { bf16_pack_pair_slab(w, ldw, m, k, s * 32, out + s * bf16_pair_slab_elems(k)); });
}

void bf16_pack_pairs_f32(const float* w, int64_t ldw, int64_t m, int64_t k, bool transposed, uint16_t* out) {
  const int64_t kb = (k + kKBlock - 1) / kKBlock, halves = 2 * ((m + 31) / 32);
  alignas(64) static const uint16_t pair_idx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  parallel_for(halves * kb, [&](int64_t task, int) {
    // Consecutive tasks read neighbouring memory of the source: along its rows for W (block b
    // fastest), across its columns for W = wᵀ (column block hv fastest; rows of w are then read in
    // 64-byte pieces left to right instead of one piece per 16 KB row down a column).
    const int64_t hv = transposed ? task % halves : task / kb, b = transposed ? task / halves : task % kb;
    const int64_t r0 = hv * 16, k0 = b * kKBlock;
    uint16_t* dst = out + (hv * kb + b) * 16 * kKBlock;  // = slab hv/2, half hv%2, block b
    if (!transposed) {
      // Rows r0.. of W, 32 values each: to bf16 pairs, then pair p2 of row c goes to dst[p2][c].
      __m512i r[16];
      for (int c = 0; c < 16; ++c) {
        const int64_t row = r0 + c;
        if (row >= m) {
          r[c] = _mm512_setzero_si512();
          continue;
        }
        const float* src = w + row * ldw + k0;
        const __m512 lo = _mm512_maskz_loadu_ps(first16(k - k0), src), hi = _mm512_maskz_loadu_ps(first16(k - k0 - 16), src + 16);
        r[c] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      }
      transpose16x16_epi32(r);
      for (int p2 = 0; p2 < 16; ++p2) _mm512_storeu_si512(dst + p2 * kKBlock, r[p2]);
    } else {
      // W = wᵀ with w [k, m]: pair p2 of W row c = (w[k0 + 2 p2][r0 + c], w[k0 + 2 p2 + 1][r0 + c]).
      const __m512i idx = _mm512_load_si512(pair_idx);
      const __mmask16 cm = first16(m - r0);
      for (int p2 = 0; p2 < 16; ++p2) {
        const int64_t i = k0 + 2 * p2;
        const __m512 a0 = i < k ? _mm512_maskz_loadu_ps(cm, w + i * ldw + r0) : _mm512_setzero_ps();
        const __m512 a1 = i + 1 < k ? _mm512_maskz_loadu_ps(cm, w + (i + 1) * ldw + r0) : _mm512_setzero_ps();
        _mm512_storeu_si512(dst + p2 * kKBlock, _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(a1, a0)));
      }
    }
  });
}

// ------------------------------------------------------------------ 12x32 kernel

namespace {

constexpr int kMr = 12;
// Unpacked W: below this many tokens packing a slab costs more than the dot kernel's whole work.
constexpr int64_t kPackMinTokens = 48;

// y[i][c] (i < MR, c < 32 masked by cm0/cm1) = Σ_p xp[i][p] · slab[p][c] over `pairs` pairs.
template <int MR>
void tile_12x32(const uint16_t* xp, int64_t kp, const uint16_t* slab, int64_t pairs, float* y, int64_t ldy,
                __mmask16 cm0, __mmask16 cm1) {
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const uint16_t* b0 = slab;
  const uint16_t* b1 = slab + pairs * 32;
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0 + p * 32);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(b1 + p * 32);
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, xp + i * kp + 2 * p, 4);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
      acc0[i] = _mm512_dpbf16_ps(acc0[i], xv, w0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], xv, w1);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(y + i * ldy, cm0, acc0[i]);
    _mm512_mask_storeu_ps(y + i * ldy + 16, cm1, acc1[i]);
  }
}

template <int MR = kMr>
void tile_rows(int rows, const uint16_t* xp, int64_t kp, const uint16_t* slab, int64_t pairs, float* y, int64_t ldy,
               __mmask16 cm0, __mmask16 cm1) {
  if constexpr (MR > 0) {
    if (rows == MR) return tile_12x32<MR>(xp, kp, slab, pairs, y, ldy, cm0, cm1);
    return tile_rows<MR - 1>(rows, xp, kp, slab, pairs, y, ldy, cm0, cm1);
  }
}

}  // namespace

void gemm_bf16_bf16_f32_12x32__avx512bf16(const GemmBf16Args& a) {
  if (a.w_tiles == nullptr && a.n < kPackMinTokens) return gemm_bf16_bf16_f32_4x4__avx512bf16(a);
  const int64_t kp = k_blocks(a.k) * kKBlock, pairs = kp / 2;
  // X [n, kp] zero-padded: the last pair of an odd k reads a zero, not the next row.
  std::vector<uint16_t> xp(size_t(a.n * kp), 0);
  for (int64_t i = 0; i < a.n; ++i) std::memcpy(&xp[size_t(i * kp)], a.x + i * a.ldx, size_t(a.k) * 2);
  gemm_parallel_m(a.m, 32, a.n, a.k, [&](int64_t m0, int64_t m1) {
    std::vector<uint16_t> wp(a.w_tiles == nullptr ? size_t(bf16_pair_slab_elems(a.k)) : 0);
    for (int64_t r0 = m0; r0 < m1; r0 += 32) {
      const uint16_t* slab = a.w_tiles != nullptr ? a.w_tiles + (r0 / 32) * bf16_pair_slab_elems(a.k) : wp.data();
      if (a.w_tiles == nullptr) bf16_pack_pair_slab(a.w, a.ldw, a.m, a.k, r0, wp.data());
      const int64_t cols = std::min(m1, a.m) - r0;
      const __mmask16 cm0 = first16(cols), cm1 = first16(cols - 16);
      for (int64_t i0 = 0; i0 < a.n; i0 += kMr)
        tile_rows(int(std::min<int64_t>(kMr, a.n - i0)), &xp[size_t(i0 * kp)], kp, slab, pairs, a.y + i0 * a.ldy + r0, a.ldy, cm0, cm1);
    }
  });
}

void gemm_bf16_bf16_f32_4x4__avx512bf16(const GemmBf16Args& a) {
  gemm_parallel_m(a.m, 4, a.n, a.k, [&](int64_t m0, int64_t m1) {
    constexpr int64_t kSlab = 32;  // w rows kept in L2 while all x rows stream past
    for (int64_t s = m0; s < m1; s += kSlab) {
      const int64_t e = std::min(m1, s + kSlab);
      int64_t i = 0;
      for (; i + 4 <= a.n; i += 4) row_block<4>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
      for (; i < a.n; ++i) row_block<1>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
    }
  });
}

}  // namespace tz::kernels
