// AMX bf16 GEMM: 32 x 32 output blocks as four 16 x 16 f32 tiles (tmm0-3), two X tiles (tmm4-5,
// 16 rows x 32 k) and two W tiles (tmm6-7) in the VNNI pair layout AMX needs:
// B[k/2][col][2] = W[col][k] — the pair panels of avx512bf16.cpp's packer, whose 16 pairs of a
// k block are exactly one tile. Each task packs its own 32-row slab of W (done in L2-sized pieces
// by the thread that uses it) or reads the caller's packed copy, and streams every X block past it.
// X is copied once into a zero-padded buffer so edge tiles need no special code.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/amx_tiles.h"
#include "kernels/gemm/gemm.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {

constexpr int64_t kTile = 16;   // tile rows / f32 columns
constexpr int64_t kKStep = 32;  // bf16 values per tile row (64 bytes)

}  // namespace

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
      if (a.w_tiles != nullptr) slab = a.w_tiles + (r0 / 32) * bf16_pair_slab_elems(a.k);  // packed once by the caller
      else bf16_pack_pair_slab(a.w, a.ldw, a.m, a.k, r0, wp.data());
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
