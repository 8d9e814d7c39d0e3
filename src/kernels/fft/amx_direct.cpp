// Direct convolution on AMX tiles (see direct.h for the algorithm and layouts).
// Tiles: 0-3 = C (two 16-block row groups x two 16-position column halves), 4, 5 = shifted input
// blocks (A), 6, 7 = Toeplitz slices (B).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/amx_tiles.h"
#include "kernels/fft/direct.h"

namespace tz::kernels::fft {
namespace {

// W[16 + e] = P[2e .. 2e + 15]; built 8 rows at a time from two aligned loads of P.
struct Windows {
  uint32_t (*w)[16];
  const uint32_t* p;
  int64_t built = -16;
  void build_to(int64_t e_end) {
    for (; built < e_end; built += 8) {
      const __m512i a = _mm512_load_si512(p + 2 * built), b = _mm512_load_si512(p + 2 * built + 16);
      uint32_t(*r)[16] = w + 16 + built;
      _mm512_store_si512(r[0], a);
      _mm512_store_si512(r[1], _mm512_alignr_epi32(b, a, 2));
      _mm512_store_si512(r[2], _mm512_alignr_epi32(b, a, 4));
      _mm512_store_si512(r[3], _mm512_alignr_epi32(b, a, 6));
      _mm512_store_si512(r[4], _mm512_alignr_epi32(b, a, 8));
      _mm512_store_si512(r[5], _mm512_alignr_epi32(b, a, 10));
      _mm512_store_si512(r[6], _mm512_alignr_epi32(b, a, 12));
      _mm512_store_si512(r[7], _mm512_alignr_epi32(b, a, 14));
    }
  }
};

// Slices built ahead of the one the tiles read: far enough that their stores have drained
// (measured at n = 1K: 1 ahead 1.42 µs/row, 2: 1.27, 4: 1.17).
constexpr int64_t kAhead = 4;

void conv_row(const DirectPlan& dp, const uint32_t* pairs, const uint16_t* u, float* y, uint16_t* ubuf,
              uint32_t (*wbuf)[16], bool same_filter) {
  const int64_t n = dp.n, J = dp.J, D = dp.D;
  // The row buffer: causal, 16 zero blocks then the row (shifted tiles of the first blocks read
  // zeros); circular, the row twice (they read the row's end).
  const uint16_t* ub;
  if (dp.causal) {
    std::memcpy(ubuf + 512, u, size_t(n) * 2);
    ub = ubuf + 512;
  } else {
    std::memcpy(ubuf, u, size_t(n) * 2);
    std::memcpy(ubuf + n, u, size_t(n) * 2);
    ub = ubuf + n;
  }
  Windows w{wbuf, pairs};
  const int64_t w_end = 16 * D + 8;
  if (same_filter)
    w.built = w_end;
  else
    w.build_to(std::min(w_end, 16 * kAhead + 8));
  const int64_t JH = J / 16;
  for (int64_t g = 0; g < JH; g += 2) {
    const bool two = g + 1 < JH;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t dmax0 = dp.causal ? std::min(D, 16 * g + 16) : D;
    const int64_t dmax1 = two && dp.causal ? std::min(D, 16 * g + 32) : dmax0;
    for (int64_t d = 0; d < dmax1; ++d) {
      _tile_loadd(6, wbuf[16 + 16 * d], -64);
      _tile_loadd(7, wbuf[16 + 16 * d + 8], -64);
      if (d < dmax0) {
        _tile_loadd(4, ub + 32 * (16 * g - d), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
      }
      if (two) {
        _tile_loadd(5, ub + 32 * (16 * g + 16 - d), 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      w.build_to(std::min(w_end, 16 * (d + kAhead) + 8));
    }
    float* yo = y + 512 * g;
    _tile_stored(0, yo, 128);
    _tile_stored(1, yo + 16, 128);
    if (two) {
      _tile_stored(2, yo + 512, 128);
      _tile_stored(3, yo + 512 + 16, 128);
    }
  }
}

}  // namespace

void fftconv_bf16_direct_toeplitz32__amx(const DirectPlan& dp, int64_t row0, int64_t row1, const uint16_t* u, float* y,
                           void* workspace) {
  load_tile_config_16x64();
  auto* ubuf = static_cast<uint16_t*>(workspace);
  auto* wbuf = reinterpret_cast<uint32_t(*)[16]>(static_cast<char*>(workspace) + size_t(2 * dp.n + 512) * 2);
  if (dp.causal) std::memset(ubuf, 0, 512 * 2);
  int64_t last = -1;
  for (int64_t row = row0; row < row1; ++row) {
    const int64_t c = row % dp.h;
    conv_row(dp, dp.channel_pairs(c), u + row * dp.n, y + row * dp.n, ubuf, wbuf, c == last);
    last = c;
  }
  _tile_release();
}

}  // namespace tz::kernels::fft
