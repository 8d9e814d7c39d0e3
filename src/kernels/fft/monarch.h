// The bf16 Monarch FFT convolution for AMX (FlashFFTConv on CPU matrix units), one row at a time.
//
// A row's real sequence (zero-padded to 2n when causal) is packed as m complex values and kept as
// interleaved bf16 pairs — exactly AMX's VNNI pair layout, so a 16 x 16 block of complex values is
// one tile. Its FFT is m = r · 16^s (r in 1, 2, 4, 8): an optional radix-r top stage on AVX-512,
// then radix-16 stages, each a DFT-16 *matrix multiply* on AMX (complex DFT-16 = real 32 x 32
// matrix: two tiles for the real and imaginary outputs, scaled so that its entries are within
// 2.9e-4 of bf16 values) with the twiddle product fused into
// the tile epilogue in fp32. A stage on a block of L values reads it as a 16 x L/16 matrix (rows at
// stride L/16): the data is the B operand, the DFT matrix the A operand. The last two stages
// (L = 256, 16) of a block and of the block holding the mirrored bins run together with the
// spectral product (real-input split, filter spectrum, merge) and the first two inverse stages,
// tile to tile, without going back to the row buffer. The inverse runs on conjugated data, so the
// forward DFT tiles and twiddle tables serve both directions (conj ∘ FFT ∘ conj = n · IFFT).
// A row's buffer is 4·m bytes: it stays in L2 up to m = 256K.
#pragma once
#include <cstddef>
#include <complex>
#include <cstdint>
#include <new>
#include <vector>

#include "core/dispatch.h"

namespace tz::kernels::fft {

// 64-byte aligned storage, so every 16-float row the kernel loads is one cache line.
template <class T> struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U> Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U> bool operator==(const Aligned64<U>&) const { return true; }
};
using AlignedFloats = std::vector<float, Aligned64<float>>;

// W_L^{a·p} for a < radix, p < L / radix at a·(L/radix) + p; planar fp32.
struct TwiddleTable {
  int64_t L = 0;
  int radix = 16;
  AlignedFloats re, im;
};

struct MonarchPlan {
  int64_t n = 0, m = 0, h = 0;
  bool causal() const { return n / 2 < m; }  // causal: the row is zero-padded to 2n, m = n
  int r = 1;                        // top radix (1: none)
  float top_c[8] = {}, top_s[8] = {};  // W_r^t = top_c[t] + i·top_s[t]
  // stage[0] is the top stage (size m, radix r, or radix 16 when r = 1), then sizes /16 down to 256.
  std::vector<TwiddleTable> stage;
  std::vector<int32_t> partner;     // per 256-block: the block holding bins m − k of its bins k
  std::vector<int32_t> part0;       // block 0: position of bin (m − k) for each position (k = 0: 0)
  // The spectral step in closed form. With A = Z[k], B = conj(Z[m − k]) (Z: the packed size-m
  // spectrum), splitting into the real sequence's spectrum, multiplying by the filter and merging
  // back is  Z'[k] = A·U[k] + B·V[k]  where, with P = K[k]/m, Q = conj(K[m − k])/m (K: the filter's
  // spectrum of length 2m; K[m] pairs with k = 0), θ = πk/m, S = (P + Q)/2, D = (P − Q)/2:
  // U = S − sin θ · D, V = i cos θ · D; and for the mirror bin U[m − k] = conj(S + sin θ · D),
  // V[m − k] = i cos θ · conj(D). So one (S, D) serves both bins of a mirrored pair: 4 bytes per
  // bin in bf16 (each row of a call reads its channel's table once, from memory when B·H·m is large:
  // bf16 instead of fp32 measured 5-12 % faster at N = 4K-256K, error 2.9-4.2e-3 -> 3.4-4.3e-3).
  // Stored per "k-side" row of 16 positions (row i of the lower block of a mirrored pair; rows 0-7
  // of a block that mirrors itself):
  //   sd: per channel, per k-side row: [S re x16][S im x16][D re x16][D im x16], bf16
  //   sc: per k-side row: [sin θ x16][cos θ x16]
  // Block 0 (bins 0 and m/2, mirrored through part0) keeps U, V per position:
  //   uv0: per channel, 16 rows of [U re x16][U im x16][V re x16][V im x16].
  std::vector<int32_t> kside_row;  // per 256-block: its first k-side row, or −1
  int64_t kside_rows = 0;
  std::vector<uint16_t, Aligned64<uint16_t>> sd;
  AlignedFloats sc, uv0;
  alignas(64) uint16_t dft[2][512];  // DFT-16 tiles (scaled, see monarch_plan.cpp), bf16: re, im

  const uint16_t* channel_sd(int64_t c) const { return sd.data() + size_t(c) * size_t(kside_rows) * 64; }
  const float* channel_uv0(int64_t c) const { return uv0.data() + size_t(c) * 1024; }
};

// Where the forward transform leaves bin k: positions' digits (radix r, then 16s) reversed.
int64_t monarch_bin_of_position(int64_t m, int r, int64_t pos);
// Supported when the complex size is at least one 256-block.
inline bool monarch_supported(int64_t m) { return m >= 256; }
// spectra[c][k], k = 0 .. m: channel c's float64 filter spectrum (real DFT of length 2m).
MonarchPlan make_monarch_plan(int64_t n, int64_t m, int64_t h, const std::vector<std::vector<std::complex<double>>>& spectra,
                              const uint8_t* skip, int64_t skip_block);
constexpr size_t kMonarchScratchBytes = 65536;  // per-thread tile staging (amx_monarch.cpp)
inline size_t monarch_workspace_bytes(const MonarchPlan& mp) { return size_t(4 * mp.m) + kMonarchScratchBytes; }

// Rows [row0, row1) of u[B·H, n] (bf16) -> y (f32). workspace: monarch_workspace_bytes, 64-aligned.
// stream_y: write y with non-temporal stores (y 64-byte aligned; for outputs larger than the caches).
using MonarchRowsFn = void (*)(const MonarchPlan& mp, int64_t row0, int64_t row1, const uint16_t* u, float* y,
                               void* workspace, bool stream_y);
void fftconv_bf16_monarch16_rows__amx(const MonarchPlan&, int64_t, int64_t, const uint16_t*, float*, void*, bool);

// Family "fftconv_bf16": the Monarch bf16 path, its plan builder (the filter spectra in the
// kernel's layout) and rows kernel together. The fallback choice has neither: bf16 plans then
// run the fp32 kernel, converting rows on load.
struct MonarchConfig {
  MonarchRowsFn rows = nullptr;
  MonarchPlan (*plan)(int64_t n, int64_t m, int64_t h, const std::vector<std::vector<std::complex<double>>>& spectra,
                      const uint8_t* skip, int64_t skip_block) = nullptr;
};

}  // namespace tz::kernels::fft

namespace tz::detail {
KernelFamily<kernels::fft::MonarchConfig>& fftconv_bf16_family();
}  // namespace tz::detail
