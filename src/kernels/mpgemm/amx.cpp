// Prefill path of the low-bit GEMM on AMX int8 tiles (ik_llama.cpp's observation: for many tokens,
// multiply-add beats table lookups). Activations are quantized per token to int8 (one scale per
// row); each task decodes the 32-row slab of packed bit planes it owns into int8 VNNI tiles
// (v = q − 2^(b−1), so every format fits int8) in L2, then TDPBSSD accumulates 32 x 32 output
// blocks over each weight group; the group's int32 tile is scaled by the group scales and the
// token scales into f32. The weights stay at b bits in memory: decoding is O(m·k) per call, the
// multiply O(n·m·k).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/amx_tiles.h"
#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {


inline __m512 load_scales16(const uint8_t* p, int sb) {
  return sb == 4 ? _mm512_loadu_ps(p) : _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Decodes LUT tile t into int8 B tiles: out[kb][16 (k/4)][16 cols][4] for kb in [0, ksteps).
void decode_tile(const LutWeights& w, int64_t t, int64_t ksteps, int8_t* out) {
  const int P = w.planes();
  const __m512i center = _mm512_set1_epi8(char(1 << (w.planes() - 1)));
  __m512i idx[4], bitmask[2];
  for (int j = 0; j < 4; ++j) {
    alignas(64) uint8_t v[64];
    for (int b = 0; b < 64; ++b) v[b] = uint8_t((b / 4) * 4 + j);
    idx[j] = _mm512_load_si512(v);
  }
  for (int h = 0; h < 2; ++h) {
    alignas(64) uint8_t v[64];
    for (int b = 0; b < 64; ++b) v[b] = uint8_t(1u << (b % 4 + 4 * h));
    bitmask[h] = _mm512_load_si512(v);
  }
  const int64_t chunks = w.k_pad() / 32;
  for (int64_t kb = 0; kb < ksteps; ++kb)
    for (int cc = 0; cc < 2; ++cc) {
      const int64_t chunk = 2 * kb + cc;
      int8_t* dst = out + (kb * 16 + cc * 8) * 64;
      if (chunk >= chunks) {
        std::memset(dst, 0, 8 * 64);  // activations are zero there
        continue;
      }
      const int64_t g = chunk * 32 / w.group_cols(), c = chunk - g * w.group_cols() / 32;
      const uint8_t* planes = w.tile(t) + w.group_offset(g) + c * P * 64;
      for (int qi = 0; qi < 8; ++qi) {
        __m512i code = _mm512_setzero_si512();
        for (int p = 0; p < P; ++p) {
          const __m512i x = _mm512_permutexvar_epi8(idx[qi % 4], _mm512_loadu_si512(planes + p * 64));
          const __mmask64 m = _mm512_test_epi8_mask(x, bitmask[qi / 4]);
          code = _mm512_mask_add_epi8(code, m, code, _mm512_set1_epi8(char(1 << p)));
        }
        _mm512_storeu_si512(dst + qi * 64, _mm512_sub_epi8(code, center));
      }
    }
}

}  // namespace

void qgemm_qbg_i8_f32_32x32__amx(const LutWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  const int64_t k = w.cols(), ksteps = (w.k_pad() + 63) / 64, kp = ksteps * 64;
  const int64_t np = (n + 31) / 32 * 32, G = w.group_cols(), ng = w.groups();
  const int64_t steps_per_group = std::max<int64_t>(1, G / 64);
  // Activations: int8 per token, one scale per token; per-group sums of the int8 values. Stored
  // tile by tile ([16-token block][k step][16 rows][64 bytes]) so each A tile is 1 KB contiguous:
  // row-major with a 4 KB stride would put a tile's 16 rows in one L1 set.
  std::vector<int8_t> xq(size_t(np * kp), 0);
  const auto xq_at = [&](int64_t i, int64_t j) { return size_t((((i / 16) * ksteps + j / 64) * 16 + i % 16) * 64 + j % 64); };
  std::vector<float> xs(size_t(np), 0.f);
  std::vector<int32_t> xsum(size_t(np * ng), 0);
  parallel_for(n, [&](int64_t i, int) {
    const float* a = x + i * ldx;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j += 16) {
      const __mmask16 m = k - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - j)) - 1);
      vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, a + j)));
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    const float s = amax > 0.f ? amax / 127.f : 1.f;
    const __m512 inv = _mm512_set1_ps(1.f / s);
    xs[size_t(i)] = s;
    for (int64_t j = 0; j < k; j += 16) {  // 16 | 64: a vector never straddles a tile row
      const __mmask16 m = k - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - j)) - 1);
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + j), inv));  // RNE
      _mm_storeu_si128(reinterpret_cast<__m128i*>(&xq[xq_at(i, j)]), _mm512_cvtsepi32_epi8(q));
      xsum[size_t(i * ng + j / G)] += _mm512_reduce_add_epi32(q);
    }
  });
  const float center = float(1 << (w.planes() - 1));
  const bool has_zeros = w.has_zeros();
  const float zfixed = w.format().ternary ? 1.f : lut_half(w.format());
  const int sb = w.scale_bytes();
  // Offset term Σ_g ws·(center − z)·Σ a_q: per tile and group the 16 coefficients ws·(center − z),
  // applied once per output at the end rather than inside the group loop.
  std::vector<float> wz(size_t(w.tiles() * ng * 16)), xsumf(xsum.begin(), xsum.end());
  for (int64_t t = 0; t < w.tiles(); ++t)
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t* sc = w.tile(t) + w.group_offset(g) + w.group_chunks(g) * w.planes() * 64;
      const __m512 ws = load_scales16(sc, sb);
      const __m512 z = has_zeros ? load_scales16(sc + 16 * sb, sb) : _mm512_set1_ps(zfixed);
      _mm512_storeu_ps(&wz[size_t((t * ng + g) * 16)], _mm512_mul_ps(ws, _mm512_sub_ps(_mm512_set1_ps(center), z)));
    }
  const int64_t slabs = (w.tiles() + 1) / 2;
  // A task owns kSlabs slabs (128 rows of W). For each 32-token block and group, the A tiles are
  // loaded once per slab but stay in L1 across the task's slabs; only B tiles come from L2.
  constexpr int64_t kSlabs = 4;
  const int64_t tasks = (slabs + kSlabs - 1) / kSlabs;
  const size_t slab_bytes = size_t(2 * ksteps * 16 * 64);
  std::vector<std::vector<int8_t>> per_thread(static_cast<size_t>(num_threads()));

  parallel_for(tasks, [&](int64_t task, int th) {
    load_tile_config_16x64();  // tile state is per thread
    const int64_t s0 = task * kSlabs, ns = std::min(kSlabs, slabs - s0);
    std::vector<int8_t>& bt = per_thread[size_t(th)];
    bt.assign(slab_bytes * size_t(kSlabs), 0);
    for (int64_t s = 0; s < ns; ++s)
      for (int64_t u = 0; u < 2 && (s0 + s) * 2 + u < w.tiles(); ++u)
        decode_tile(w, (s0 + s) * 2 + u, ksteps, bt.data() + size_t(s) * slab_bytes + size_t(u * ksteps * 16 * 64));
    alignas(64) int32_t ct[4][256];
    alignas(64) float acc[kSlabs][32][32];
    for (int64_t i0 = 0; i0 < n; i0 += 32) {
      std::memset(acc, 0, sizeof acc);
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t kb0 = g * steps_per_group, kb1 = ng == 1 ? ksteps : std::min(ksteps, kb0 + steps_per_group);
        for (int64_t s = 0; s < ns; ++s) {
          const int8_t* b = bt.data() + size_t(s) * slab_bytes;
          _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
          for (int64_t kb = kb0; kb < kb1; ++kb) {
            // Tile loads wait on L2; pull the next step's B tiles (2 KB) into L1 meanwhile.
            if (kb + 1 < ksteps)
              for (int l = 0; l < 16; ++l) {
                _mm_prefetch(reinterpret_cast<const char*>(b + (kb + 1) * 16 * 64 + l * 64), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(b + (ksteps + kb + 1) * 16 * 64 + l * 64), _MM_HINT_T0);
              }
            _tile_loadd(4, &xq[xq_at(i0, kb * 64)], 64);
            _tile_loadd(5, &xq[xq_at(i0 + 16, kb * 64)], 64);
            _tile_loadd(6, b + kb * 16 * 64, 64);
            _tile_loadd(7, b + (ksteps + kb) * 16 * 64, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
          }
          _tile_stored(0, ct[0], 64);
          _tile_stored(1, ct[1], 64);
          _tile_stored(2, ct[2], 64);
          _tile_stored(3, ct[3], 64);
          // acc += ws·(Σ v·a_q) over this group (the token scale and offset term come at the end).
          const int64_t t0 = (s0 + s) * 2;
          for (int64_t u = 0; u < 2 && t0 + u < w.tiles(); ++u) {
            const uint8_t* sc = w.tile(t0 + u) + w.group_offset(g) + w.group_chunks(g) * w.planes() * 64;
            const __m512 ws = load_scales16(sc, sb);
            for (int h = 0; h < 2; ++h)
              for (int r = 0; r < 16; ++r) {
                float* a = acc[s][h * 16 + r] + u * 16;
                _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ct[h * 2 + u] + r * 16)), ws,
                                                   _mm512_load_ps(a)));
              }
          }
        }
        if (ng == 1) break;
      }
      for (int64_t s = 0; s < ns; ++s)
        for (int64_t u = 0; u < 2 && (s0 + s) * 2 + u < w.tiles(); ++u) {
          const int64_t m0 = ((s0 + s) * 2 + u) * 16, rows = std::min<int64_t>(16, w.rows() - m0);
          const __mmask16 mk = __mmask16((1u << rows) - 1u);
          for (int64_t r = 0; r < 32 && i0 + r < n; ++r) {
            // Two partial sums: one FMA chain over all groups would be latency-bound.
            __m512 z0 = _mm512_setzero_ps(), z1 = _mm512_setzero_ps();
            const float* wzt = &wz[size_t(((s0 + s) * 2 + u) * ng * 16)];
            const float* xsr = &xsumf[size_t((i0 + r) * ng)];
            int64_t g = 0;
            for (; g + 2 <= ng; g += 2) {
              z0 = _mm512_fmadd_ps(_mm512_set1_ps(xsr[g]), _mm512_loadu_ps(wzt + g * 16), z0);
              z1 = _mm512_fmadd_ps(_mm512_set1_ps(xsr[g + 1]), _mm512_loadu_ps(wzt + g * 16 + 16), z1);
            }
            if (g < ng) z0 = _mm512_fmadd_ps(_mm512_set1_ps(xsr[g]), _mm512_loadu_ps(wzt + g * 16), z0);
            const __m512 zt = _mm512_add_ps(z0, z1);
            const __m512 out = _mm512_mul_ps(_mm512_set1_ps(xs[size_t(i0 + r)]), _mm512_add_ps(_mm512_load_ps(acc[s][r] + u * 16), zt));
            _mm512_mask_storeu_ps(y + (i0 + r) * ldy + m0, mk, out);
          }
        }
    }
    _tile_release();
  });
}

}  // namespace tz::kernels
