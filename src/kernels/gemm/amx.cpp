// AMX bf16 GEMM: 32 x 32 output blocks as four 16 x 16 f32 tiles (tmm0-3), two X tiles (tmm4-5,
// 16 rows x 32 k) and two W tiles (tmm6-7) in the VNNI pair layout AMX needs:
// B[k/2][col][2] = W[col][k]. Each task packs its own 32-row slab of W (the packing is the kernel's
// contract, done in L2-sized pieces by the thread that uses it) and streams every X block past it.
// X is copied once into a zero-padded buffer so edge tiles need no special code.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/amx_tiles.h"
#include "kernels/transpose16_avx512.h"
#include "kernels/gemm/gemm.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {

constexpr int64_t kTile = 16;   // tile rows / f32 columns
constexpr int64_t kKStep = 32;  // bf16 values per tile row (64 bytes)


// Packs W rows [r0, r0+32) (zero beyond m) into 2 x kb tiles of 16 (k pairs) x 32 bf16.
void pack_w_slab(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, int64_t r0, int64_t kb,
                 uint16_t* out) {
  // out layout: [half (2)][kblock][pair row 16][col 16][2]
  std::memset(out, 0, size_t(2 * kb * kTile * kKStep) * sizeof(uint16_t));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t c = 0; c < kTile; ++c) {
      const int64_t row = r0 + h * kTile + c;
      if (row >= m) break;
      const uint16_t* src = w + row * ldw;
      uint16_t* dst = out + h * kb * kTile * kKStep + c * 2;
      for (int64_t p2 = 0; p2 < (k + 1) / 2; ++p2) {
        uint16_t* d = dst + ((p2 >> 4) * kTile + (p2 & 15)) * kKStep;  // tile p2/16, pair row p2%16
        d[0] = src[2 * p2];
        d[1] = 2 * p2 + 1 < k ? src[2 * p2 + 1] : uint16_t(0);
      }
    }
}

}  // namespace

int64_t amx_slab_elems(int64_t k) { return 2 * ((k + kKStep - 1) / kKStep) * kTile * kKStep; }
int64_t amx_packed_elems(int64_t m, int64_t k) { return ((m + 31) / 32) * amx_slab_elems(k); }

void amx_pack_weights(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, uint16_t* out) {
  const int64_t kb = (k + kKStep - 1) / kKStep, slabs = (m + 31) / 32;
  parallel_for(slabs, [&](int64_t s, int) { pack_w_slab(w, ldw, m, k, s * 32, kb, out + s * amx_slab_elems(k)); });
}

namespace {
inline __mmask16 first(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
}  // namespace

void amx_pack_weights_f32(const float* w, int64_t ldw, int64_t m, int64_t k, bool transposed, uint16_t* out) {
  const int64_t kb = (k + kKStep - 1) / kKStep, halves = 2 * ((m + 31) / 32);
  alignas(64) static const uint16_t pair_idx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  parallel_for(halves * kb, [&](int64_t task, int) {
    // Consecutive tasks read neighbouring memory of the source: along its rows for W (block b
    // fastest), across its columns for W = wᵀ (column block hv fastest; rows of w are then read in
    // 64-byte pieces left to right instead of one piece per 16 KB row down a column).
    const int64_t hv = transposed ? task % halves : task / kb, b = transposed ? task / halves : task % kb;
    const int64_t r0 = hv * kTile, k0 = b * kKStep;
    uint16_t* dst = out + (hv * kb + b) * kTile * kKStep;  // = slab hv/2, half hv%2, block b
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
        const __m512 lo = _mm512_maskz_loadu_ps(first(k - k0), src), hi = _mm512_maskz_loadu_ps(first(k - k0 - 16), src + 16);
        r[c] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      }
      transpose16x16_epi32(r);
      for (int p2 = 0; p2 < 16; ++p2) _mm512_storeu_si512(dst + p2 * kKStep, r[p2]);
    } else {
      // W = wᵀ with w [k, m]: pair p2 of W row c = (w[k0 + 2 p2][r0 + c], w[k0 + 2 p2 + 1][r0 + c]).
      const __m512i idx = _mm512_load_si512(pair_idx);
      const __mmask16 cm = first(m - r0);
      for (int p2 = 0; p2 < 16; ++p2) {
        const int64_t i = k0 + 2 * p2;
        const __m512 a0 = i < k ? _mm512_maskz_loadu_ps(cm, w + i * ldw + r0) : _mm512_setzero_ps();
        const __m512 a1 = i + 1 < k ? _mm512_maskz_loadu_ps(cm, w + (i + 1) * ldw + r0) : _mm512_setzero_ps();
        _mm512_storeu_si512(dst + p2 * kKStep, _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(a1, a0)));
      }
    }
  });
}

void gemm_bf16_bf16_f32_32x32__amx(const GemmBf16Args& a) {
  // Tiles need 16 rows of X to pay off; below that the AVX-512-BF16 dot kernel wins.
  // (Pre-packed weights stay on the tiles: the caller kept no other copy.)
  if (a.n < kTile && a.w_tiles == nullptr) return gemm_bf16_bf16_f32_4x4__avx512bf16(a);
  const int64_t np = (a.n + 31) / 32 * 32, kb = (a.k + kKStep - 1) / kKStep, kp = kb * kKStep;
  std::vector<uint16_t> xp(size_t(np * kp), 0);
  for (int64_t i = 0; i < a.n; ++i) std::memcpy(&xp[size_t(i * kp)], a.x + i * a.ldx, size_t(a.k) * 2);

  gemm_parallel_m(a.m, 32, a.n, a.k, [&](int64_t m0, int64_t m1) {
    load_tile_config_16x64();  // tile state is per thread
    std::vector<uint16_t> wp(static_cast<size_t>(2 * kb * kTile * kKStep));
    alignas(64) float out[4][kTile * kTile];
    for (int64_t r0 = m0; r0 < m1; r0 += 32) {
      const uint16_t* slab = wp.data();
      if (a.w_tiles != nullptr) slab = a.w_tiles + (r0 / 32) * amx_slab_elems(a.k);  // packed once by the caller
      else pack_w_slab(a.w, a.ldw, a.m, a.k, r0, kb, wp.data());
      const uint16_t* b0 = slab;
      const uint16_t* b1 = slab + kb * kTile * kKStep;
      for (int64_t i0 = 0; i0 < a.n; i0 += 32) {
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        const uint16_t* x0 = &xp[size_t(i0 * kp)];
        const uint16_t* x1 = x0 + kTile * kp;
        for (int64_t b = 0; b < kb; ++b) {
          _tile_loadd(4, x0 + b * kKStep, kp * 2);
          _tile_loadd(5, x1 + b * kKStep, kp * 2);
          _tile_loadd(6, b0 + b * kTile * kKStep, 64);
          _tile_loadd(7, b1 + b * kTile * kKStep, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, out[0], 64);
        _tile_stored(1, out[1], 64);
        _tile_stored(2, out[2], 64);
        _tile_stored(3, out[3], 64);
        for (int t = 0; t < 4; ++t) {
          const int64_t ri = i0 + (t / 2) * kTile, cj = r0 + (t % 2) * kTile;
          const int64_t rows = std::min(kTile, a.n - ri), cols = std::min(kTile, std::min(m1, a.m) - cj);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) a.y[(ri + r) * a.ldy + cj + c] = out[t][r * kTile + c];
        }
      }
    }
    _tile_release();
  });
}

}  // namespace tz::kernels
