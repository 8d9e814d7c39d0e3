// Direct (Toeplitz) convolution on AMX tiles, for short rows and short filters, where its
// O(N·Nk) multiply-adds at the tile rate beat an O(N log N) FFT whose vector work dominates.
//
// A row of n bf16 values is read as J = n/32 blocks of 32. Output block j, position r:
//   y[32j + r] = Σ_d Σ_c k[32d + r − c] · u[32(j − d) + c]          (d = j − j', c, r < 32)
// so for each block offset d the product is C[j][r] += A_d[j][c] · T_d[c][r], with A_d the
// input blocks shifted by d rows (a tile straight from the row buffer) and T_d a 32 × 32
// Toeplitz slice of the filter. T_d as AMX's B operand (VNNI pairs): row p, column r holds the
// pair (k[s + r − 2p], k[s + r − 2p − 1]), s = 32d (+16 for the right column half). With the
// filter's pairs P[m] = (k[m], k[m − 1]) that row is the 16-pair window starting at P[s − 2p]:
// the windows W[e] = P[2e .. 2e + 15] (one 64-byte row per even start) hold every B tile as 16
// consecutive rows read backwards (stride −64). W is built per row from P while the tiles work
// (measured: built all at once before the tile work, its stores cost as much as the tile work;
// spread 16 rows per block offset, they overlap with it).
// Causal: k and u are zero before 0, d < J; circular: indices wrap (P circular, the row buffer
// holds the row twice). Filters of nk < n only touch d < ceil((nk + 31) / 32).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "kernels/fft/monarch.h"  // Aligned64

namespace tz::kernels::fft {

struct DirectPlan {
  int64_t n = 0, h = 0, nk = 0;
  bool causal = true;
  int64_t J = 0;  // blocks of 32 per row
  int64_t D = 0;  // block offsets with a non-zero Toeplitz slice
  // Per channel: P[m] for m in [−kPairFront, n + kPairBack), bf16 pairs as uint32 (low: k[m]).
  static constexpr int64_t kPairFront = 32, kPairBack = 64;
  int64_t pair_stride = 0;
  std::vector<uint32_t, Aligned64<uint32_t>> pairs;
  const uint32_t* channel_pairs(int64_t c) const { return pairs.data() + size_t(c) * size_t(pair_stride) + kPairFront; }
};

// n: a multiple of 512 (whole 16-block tiles). k: [h, nk] f32, rounded to bf16.
bool direct_supported(int64_t n);
DirectPlan make_direct_plan(int64_t n, int64_t h, const float* k, int64_t nk, bool causal);
// Tile products per row (the cost the plan's Auto choice weighs against the FFT's).
int64_t direct_tile_products(int64_t n, int64_t nk, bool causal);
size_t direct_workspace_bytes(const DirectPlan& dp);

// Rows [row0, row1) of u[B·H, n] (bf16) -> y (f32). workspace: direct_workspace_bytes, 64-aligned.
using DirectRowsFn = void (*)(const DirectPlan& dp, int64_t row0, int64_t row1, const uint16_t* u, float* y,
                              void* workspace);
void fftconv_bf16_direct_toeplitz32__amx(const DirectPlan&, int64_t, int64_t, const uint16_t*, float*, void*);

// Family "fftconv_bf16_direct": the direct (Toeplitz) bf16 path's plan builder and rows kernel.
// The fallback choice has neither: Auto then never takes the direct path.
struct DirectConfig {
  DirectRowsFn rows = nullptr;
  DirectPlan (*plan)(int64_t n, int64_t h, const float* k, int64_t nk, bool causal) = nullptr;
};

}  // namespace tz::kernels::fft

namespace tz::detail {
KernelFamily<kernels::fft::DirectConfig>& fftconv_bf16_direct_family();
}  // namespace tz::detail
