// The int8 prefill path of the low-bit GEMM on vector units (no AMX): what the AVX-512-VNNI,
// AVX-VNNI and AVX2 variants share. Included only by those .cpp files, each compiled with its own
// ISA flags; everything here has internal linkage so no instantiation built with one ISA's flags
// can be merged into another's (the linker would otherwise keep one copy of an inline function).
//
//   Y[i, r] = s_i · Σ_g ( ws[r,g] · Σ_{k∈g} q[r,k]·a[i,k]  −  ws[r,g]·z[r,g] · Σ_{k∈g} a[i,k] )
//
// q = the unsigned b-bit codes (u8, the unsigned operand of VPDPBUSD / VPMADDUBSW), a = the
// activations quantized per token to int8 with scale s_i = max|x_i| / 127 (as the AMX path and
// qgemm_qbg_i8_f32__ref, so the integer sums are the same). The weights are decoded per call from their
// bit planes into [k/4][16 rows][4] bytes, one 16-row tile at a time, by the task that uses them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {

// Activations quantized per token: q [n][kq] (zero beyond k), scale s [n], and per group the sum
// of the int8 values as float, sum [n][ng].
struct Int8Acts {
  int64_t kq = 0, ng = 0;
  std::vector<int8_t> q;
  std::vector<float> s, sum;
  const int8_t* row(int64_t i) const { return q.data() + size_t(i * kq); }
};

// Per 16-row tile and group of the tiles a task owns: the 16 row scales ws and the offset
// coefficients −ws·z as f32 ([tile][ng][16] each, tile counted from the task's first), so the
// micro-kernels read one 64-byte line per tile and group.
struct Int8Coefs {
  int64_t t0 = 0, ng = 0;
  std::vector<float> ws, wz;
  const float* scales(int64_t t, int64_t g, int64_t) const { return ws.data() + size_t(((t - t0) * ng + g) * 16); }
  const float* offsets(int64_t t, int64_t g, int64_t) const { return wz.data() + size_t(((t - t0) * ng + g) * 16); }
};

inline void int8_coefs(const LutWeights& w, int64_t t0, int64_t nt, Int8Coefs& c) {
  const int64_t ng = w.groups();
  const int sb = w.scale_bytes();
  const float zfixed = w.format().ternary ? 1.f : lut_half(w.format());
  c.t0 = t0;
  c.ng = ng;
  c.ws.resize(size_t(nt * ng * 16));
  c.wz.resize(c.ws.size());
  for (int64_t u = 0; u < nt; ++u)
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t* sc = w.tile(t0 + u) + w.group_offset(g) + w.group_chunks(g) * w.planes() * 64;
      for (int r = 0; r < 16; ++r) {
        const float ws = stored_scale(sc, r, sb), z = w.has_zeros() ? stored_scale(sc + 16 * sb, r, sb) : zfixed;
        c.ws[size_t((u * ng + g) * 16 + r)] = ws;
        c.wz[size_t((u * ng + g) * 16 + r)] = -ws * z;
      }
    }
}

// Bytes of one decoded 16-row tile: [k_pad/4][16 rows][4 codes].
inline size_t decoded_tile_bytes(const LutWeights& w) { return size_t(w.k_pad()) * 16; }

// Where chunk c (32 activations) of tile t keeps its P bit planes (64 bytes each: 16 rows x 32 bits;
// byte 4r+j, bit e+4h holds column 4j + e + 16h of row r — docs/formats.md "LUT layout").
inline const uint8_t* chunk_planes(const LutWeights& w, int64_t t, int64_t c) {
  const int64_t per_group = w.group_cols() / 32, g = c / per_group;
  return w.tile(t) + w.group_offset(g) + (c - g * per_group) * w.planes() * 64;
}

// Runs the product by tasks of kTilesPerTask 16-row tiles: each task decodes its tiles into a
// per-thread buffer (L2) with `decode(w, t, out)`, then `compute(a, c, tiles, tile_bytes, t0, nt,
// i0, ni)` for every block of tokens; `quantize(x_row, k, q_row)` returns the token's scale and
// fills q_row[0, k). The buffers are thread-local and kept between calls: a fresh allocation per
// call cost page faults worth ~15 % of a 4096² product at n = 256.
template <class Quantize, class Decode, class Compute>
void int8_gemm_driver(const LutWeights& w, const float* x, int64_t n, int64_t ldx, int64_t token_block, Quantize quantize,
                      Decode decode, Compute compute) {
  constexpr int64_t kTilesPerTask = 4;
  static thread_local Int8Acts a;
  a.kq = w.k_pad();
  a.ng = w.groups();
  a.q.resize(size_t(n * a.kq));
  a.s.resize(size_t(n));
  a.sum.resize(size_t(n * a.ng));
  const int64_t G = w.group_cols(), k = w.cols();
  Int8Acts& acts = a;  // the workers see the calling thread's buffers
  parallel_for(n, [&](int64_t i, int) {
    int8_t* q = acts.q.data() + size_t(i * acts.kq);
    acts.s[size_t(i)] = quantize(x + i * ldx, k, q);
    std::memset(q + k, 0, size_t(acts.kq - k));
    for (int64_t g = 0; g < acts.ng; ++g) {
      int32_t sum = 0;
      for (int64_t j = g * G; j < std::min(acts.kq, (g + 1) * G); ++j) sum += q[j];
      acts.sum[size_t(i * acts.ng + g)] = float(sum);
    }
  });
  const size_t tile_bytes = decoded_tile_bytes(w);
  const int64_t tasks = (w.tiles() + kTilesPerTask - 1) / kTilesPerTask;
  parallel_for(tasks, [&](int64_t task, int) {
    static thread_local std::vector<uint8_t> buf;
    static thread_local Int8Coefs c;
    const int64_t t0 = task * kTilesPerTask, nt = std::min(kTilesPerTask, w.tiles() - t0);
    buf.resize(tile_bytes * size_t(kTilesPerTask) + 64);
    uint8_t* tiles = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
    for (int64_t u = 0; u < nt; ++u) decode(w, t0 + u, tiles + size_t(u) * tile_bytes);
    int8_coefs(w, t0, nt, c);
    for (int64_t i0 = 0; i0 < n; i0 += token_block)
      compute(acts, static_cast<const Int8Coefs&>(c), static_cast<const uint8_t*>(tiles), tile_bytes, t0, nt, i0,
              std::min(token_block, n - i0));
  });
}

}  // namespace
}  // namespace tz::kernels
