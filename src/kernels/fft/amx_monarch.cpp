// AMX bf16 Monarch FFT convolution (see monarch.h for the algorithm and data layout).
// Tiles: 0, 1 = real / imaginary outputs (fp32), 2 = data (bf16 pairs), 3, 4 = the DFT-16 matrix
// (real and imaginary output rows).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/amx_tiles.h"
#include "kernels/fft/monarch.h"

namespace tz::kernels::fft {
namespace {

struct alignas(64) Scratch {
  float cbuf[2][512];                // C tiles of the pipelined loops, double-buffered
  // The inner pass works on batches of up to kBatch 256-blocks (mirrored pairs kept together),
  // phase by phase, so the tile work of one block overlaps the vector work of another.
  static constexpr int kBatch = 8;
  uint32_t btile[kBatch][256];       // between the two forward (and the two inverse) inner stages
  float bzre[kBatch][256], bzim[kBatch][256];
  uint32_t bytile[kBatch][256];
};
static_assert(sizeof(Scratch) <= kMonarchScratchBytes, "monarch.h reserves the scratch");

alignas(64) constexpr uint16_t kPairIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                               8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
alignas(64) constexpr int32_t kLoIdx[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
alignas(64) constexpr int32_t kHiIdx[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
alignas(64) constexpr int32_t kRevIdx[16] = {15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};

struct Consts {
  __m512i pair = _mm512_load_si512(kPairIdx);
  __m512i lo = _mm512_load_si512(kLoIdx);
  __m512i hi = _mm512_load_si512(kHiIdx);
  __m512i rev = _mm512_load_si512(kRevIdx);
};

// 16 complex fp32 -> 16 interleaved bf16 pairs (round to nearest even).
inline __m512i pack(__m512 re, __m512 im, const Consts& k) {
  const __m512bh b = _mm512_cvtne2ps_pbh(im, re);
  return _mm512_permutexvar_epi16(k.pair, (__m512i)b);
}
inline void unpack(__m512i v, __m512& re, __m512& im) {
  re = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  im = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xFFFF0000u))));
}
inline void cmul(__m512& re, __m512& im, __m512 wr, __m512 wi) {
  const __m512 r = _mm512_fmsub_ps(re, wr, _mm512_mul_ps(im, wi));
  im = _mm512_fmadd_ps(re, wi, _mm512_mul_ps(im, wr));
  re = r;
}

// C[j][k1] = Σ_n1 x[j][n1] · F[n1][k1]: the DFT-16 of each contiguous row, data as the A operand.
inline void dft_across(const void* src, float* cre, float* cim) {
  _tile_loadd(2, src, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_dpbf16ps(0, 2, 3);
  _tile_dpbf16ps(1, 2, 4);
  _tile_stored(0, cre, 64);
  _tile_stored(1, cim, 64);
}

// The DFT-16 down the columns of each 16 x 16 chunk (data as the B operand; Across: of each
// contiguous row, data as A) over `count` chunks, then epi(chunk, C re, C im). The tile work of
// chunk c + 1 is issued before the epilogue of chunk c so the two may overlap (on the machine of
// docs/benchmarks.md they measured not to: the epilogue's vector work is the bound either way).
// How a chunk's tile product is formed: the data as the B operand (a DFT down its columns), as the
// A operand (across its rows), or as an 8-row B operand (the first stage of a causal row: inputs
// 8 .. 15 are the zero padding, so only the first half of the DFT matrix's K is needed).
enum class Tiles { Down, Across, DownHalf };

template <Tiles How = Tiles::Down, class Src, class Epi>
inline void pipelined(int64_t count, Scratch& s, Src src, Epi epi) {
  const auto issue = [&](int64_t c) {
    int64_t stride;
    const void* p = src(c, &stride);
    _tile_zero(0);
    _tile_zero(1);
    if (How == Tiles::DownHalf) {
      _tile_loadd(5, p, stride);
      _tile_dpbf16ps(0, 6, 5);
      _tile_dpbf16ps(1, 7, 5);
      return;
    }
    _tile_loadd(2, p, stride);
    if (How == Tiles::Across) {
      _tile_dpbf16ps(0, 2, 3);
      _tile_dpbf16ps(1, 2, 4);
    } else {
      _tile_dpbf16ps(0, 3, 2);
      _tile_dpbf16ps(1, 4, 2);
    }
  };
  // Tile rows are far apart in the larger stages (a line from each of 16 pages): fetch them two
  // chunks ahead.
  const auto prefetch = [&](int64_t c) {
    int64_t stride;
    const char* p = static_cast<const char*>(static_cast<const void*>(src(c, &stride)));
    for (int r = 0; r < (How == Tiles::DownHalf ? 8 : 16); ++r) _mm_prefetch(p + r * stride, _MM_HINT_T0);
  };
  if (count > 1) prefetch(1);
  issue(0);
  for (int64_t c = 0; c < count; ++c) {
    float* buf = s.cbuf[c & 1];
    _tile_stored(0, buf, 64);
    _tile_stored(1, buf + 256, 64);
    if (c + 2 < count) prefetch(c + 2);
    if (c + 1 < count) issue(c + 1);
    epi(c, buf, buf + 256);
  }
}

// Row t of the C tiles, times the twiddles at tre/tim + t·tstride (none when tre is null), to bf16
// pairs at dst + t·dstride.
inline void out_bf16(const float* cre, const float* cim, const float* tre, const float* tim, int64_t tstride, uint32_t* dst,
                     int64_t dstride, const Consts& k) {
  for (int t = 0; t < 16; ++t) {
    __m512 re = _mm512_load_ps(cre + 16 * t), im = _mm512_load_ps(cim + 16 * t);
    if (tre != nullptr) cmul(re, im, _mm512_loadu_ps(tre + t * tstride), _mm512_loadu_ps(tim + t * tstride));
    _mm512_storeu_si512(dst + t * dstride, pack(re, im, k));
  }
}
// Output samples: non-temporal when the call's output is too large to stay in cache (saves the
// read-for-ownership of every line of y), else plain stores.
inline void store_y(float* p, __m512 v, bool stream) {
  if (stream) _mm512_stream_ps(p, v);
  else _mm512_storeu_ps(p, v);
}

// The final rows to y as (re, −im) sample pairs (undoing the inverse's conjugation): row t is at
// position pos0 + t·pstride; positions from `limit` on are dropped (the causal padding).
inline void out_f32(const float* cre, const float* cim, float* y, int64_t pos0, int64_t pstride, int64_t limit,
                    const Consts& k, bool stream) {
  for (int t = 0; t < 16; ++t) {
    const int64_t pos = pos0 + t * pstride;
    if (pos >= limit) break;
    const __m512 re = _mm512_load_ps(cre + 16 * t);
    const __m512 nim = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_load_ps(cim + 16 * t));
    store_y(y + 2 * pos, _mm512_permutex2var_ps(re, k.lo, nim), stream);
    store_y(y + 2 * pos + 16, _mm512_permutex2var_ps(re, k.hi, nim), stream);
  }
}

struct Row {
  const MonarchPlan& mp;
  uint32_t* x;  // the row buffer, m bf16 pairs
  Scratch& s;
  const Consts& k;
  bool stream_y = false;  // y rows 64-byte aligned and the call's output larger than the caches
  int64_t inner() const { return int64_t(mp.stage.size()) - 1; }  // the L = 256 stage
  int64_t first16() const { return mp.r > 1 ? 1 : 0; }
};

// x · W_R^t (W_R = e^{-2πi/R}, R <= 8): after unrolling, t is a constant and this folds to sign
// flips and swaps (quarter turns) or one √½ scaling (odd eighths).
template <int R>
inline void mul_w(__m512& re, __m512& im, int t) {
  const __m512 z = _mm512_setzero_ps(), h = _mm512_set1_ps(0.70710678118654752f);
  const __m512 r = re, i = im;
  switch ((t % R) * 8 / R) {
    case 0: return;
    case 1: re = _mm512_mul_ps(_mm512_add_ps(r, i), h), im = _mm512_mul_ps(_mm512_sub_ps(i, r), h); return;
    case 2: re = i, im = _mm512_sub_ps(z, r); return;
    case 3: re = _mm512_mul_ps(_mm512_sub_ps(i, r), h), im = _mm512_mul_ps(_mm512_add_ps(r, i), _mm512_sub_ps(z, h)); return;
    case 4: re = _mm512_sub_ps(z, r), im = _mm512_sub_ps(z, i); return;
    case 5: re = _mm512_mul_ps(_mm512_add_ps(r, i), _mm512_sub_ps(z, h)), im = _mm512_mul_ps(_mm512_sub_ps(r, i), h); return;
    case 6: re = _mm512_sub_ps(z, i), im = r; return;
    default: re = _mm512_mul_ps(_mm512_sub_ps(r, i), h), im = _mm512_mul_ps(_mm512_add_ps(r, i), h); return;
  }
}

// Output a of a radix-R DFT whose inputs 0 .. N-1 are x (the rest zero): Σ_i x_i · W_R^{i·a}.
template <int R, int N>
inline void small_dft_term(const __m512* xr, const __m512* xi, int a, __m512& re, __m512& im) {
  re = xr[0];
  im = xi[0];
#pragma GCC unroll 8
  for (int i = 1; i < N; ++i) {
    __m512 tr = xr[i], ti = xi[i];
    mul_w<R>(tr, ti, i * a);
    re = _mm512_add_ps(re, tr);
    im = _mm512_add_ps(im, ti);
  }
}

// Forward top stage for r > 1: the radix-r DIF butterflies (Live nonzero inputs: r/2 when causal
// — the upper half is the zero padding) and their twiddles, reading the bf16 input row directly
// (bf16 pairs are already the packed complex values).
template <int R, int Live>
void top_forward_r(Row& w, const uint32_t* u32) {
  const MonarchPlan& mp = w.mp;
  const int64_t q = mp.m / R;
  const TwiddleTable& T = mp.stage[0];
  for (int64_t p0 = 0; p0 < q; p0 += 16) {
    __m512 xr[Live], xi[Live];
#pragma GCC unroll 8
    for (int i = 0; i < Live; ++i) unpack(_mm512_loadu_si512(u32 + i * q + p0), xr[i], xi[i]);
#pragma GCC unroll 8
    for (int a = 0; a < R; ++a) {
      __m512 re, im;
      small_dft_term<R, Live>(xr, xi, a, re, im);
      cmul(re, im, _mm512_load_ps(T.re.data() + a * q + p0), _mm512_load_ps(T.im.data() + a * q + p0));
      _mm512_storeu_si512(w.x + a * q + p0, pack(re, im, w.k));
    }
  }
}

// Inverse top stage (conjugated domain, so the forward radix-r butterflies), straight to y;
// Out outputs per column: r/2 when causal (the rest is the padding's image, dropped).
template <int R, int Out>
void top_inverse_r(Row& w, float* y) {
  const int64_t q = w.mp.m / R;
  for (int64_t p0 = 0; p0 < q; p0 += 16) {
    __m512 xr[R], xi[R];
#pragma GCC unroll 8
    for (int a = 0; a < R; ++a) unpack(_mm512_loadu_si512(w.x + a * q + p0), xr[a], xi[a]);
#pragma GCC unroll 8
    for (int i = 0; i < Out; ++i) {
      __m512 re, im;
      small_dft_term<R, R>(xr, xi, i, re, im);
      const __m512 nim = _mm512_sub_ps(_mm512_setzero_ps(), im);
      float* dst = y + 2 * (i * q + p0);
      store_y(dst, _mm512_permutex2var_ps(re, w.k.lo, nim), w.stream_y);
      store_y(dst + 16, _mm512_permutex2var_ps(re, w.k.hi, nim), w.stream_y);
    }
  }
}

// Forward top stage: packs the input row, with the radix-r stage when r > 1.
[[gnu::noinline]] void top_forward(Row& w, const uint16_t* u) {
  const MonarchPlan& mp = w.mp;
  const int64_t nv = mp.n / 2, m = mp.m;  // complex values present; beyond: causal zero padding
  const uint32_t* u32 = reinterpret_cast<const uint32_t*>(u);
  const bool causal = mp.causal();
  switch (mp.r) {
    case 2: return causal ? top_forward_r<2, 1>(w, u32) : top_forward_r<2, 2>(w, u32);
    case 4: return causal ? top_forward_r<4, 2>(w, u32) : top_forward_r<4, 4>(w, u32);
    case 8: return causal ? top_forward_r<8, 4>(w, u32) : top_forward_r<8, 8>(w, u32);
    default:
      std::memcpy(w.x, u32, size_t(nv) * 4);
      if (m > nv) std::memset(w.x + nv, 0, size_t(m - nv) * 4);
  }
}

[[gnu::noinline]] void top_inverse(Row& w, float* y) {
  const bool causal = w.mp.causal();
  switch (w.mp.r) {
    case 2: return causal ? top_inverse_r<2, 1>(w, y) : top_inverse_r<2, 2>(w, y);
    case 4: return causal ? top_inverse_r<4, 2>(w, y) : top_inverse_r<4, 4>(w, y);
    case 8: return causal ? top_inverse_r<8, 4>(w, y) : top_inverse_r<8, 8>(w, y);
    default: return;
  }
}

// One radix-16 DIF stage over every block of size L (> 256): the DFT down the columns of each
// 16 x L/16 block, then W_L^{k1·p}. src: the row buffer, or for the first stage of a row without a
// top radix the bf16 input row itself (already the packed complex sequence; causal: its 8 blocks
// of L/16 are the non-padding half, an 8-row tile) — no copy of the input into the buffer.
template <Tiles How = Tiles::Down>
[[gnu::noinline]] void outer_forward(Row& w, int64_t si, const uint32_t* src) {
  const TwiddleTable& T = w.mp.stage[size_t(si)];
  const int64_t L = T.L, q = L / 16, per = q / 16;
  uint32_t* x = w.x;
  pipelined<How>(
      w.mp.m / 256, w.s,
      [&](int64_t c, int64_t* stride) {
        *stride = q * 4;
        return src + (c / per) * L + (c % per) * 16;
      },
      [&](int64_t c, const float* cre, const float* cim) {
        const int64_t p0 = (c % per) * 16;
        out_bf16(cre, cim, T.re.data() + p0, T.im.data() + p0, q, x + (c / per) * L + p0, q, w.k);
      });
}

// One radix-16 DIT stage (forward DFT in the conjugated domain) over blocks of size L: outputs in
// natural order, then the parent stage's twiddle for this block's place in it (applied here, on
// the way out, instead of on the way into the parent); the top stage writes y.
[[gnu::noinline]] void outer_inverse(Row& w, int64_t si, float* y) {
  const MonarchPlan& mp = w.mp;
  const int64_t L = mp.stage[size_t(si)].L, q = L / 16;
  const TwiddleTable* P = si > 0 ? &mp.stage[size_t(si - 1)] : nullptr;
  const int64_t per = q / 16;
  uint32_t* x = w.x;
  pipelined(
      mp.m / 256, w.s,
      [&](int64_t c, int64_t* stride) {
        *stride = q * 4;
        return x + (c / per) * L + (c % per) * 16;
      },
      [&](int64_t c, const float* cre, const float* cim) {
        const int64_t off = (c / per) * L, p0 = (c % per) * 16;
        if (P == nullptr) return out_f32(cre, cim, y, off + p0, q, mp.n / 2, w.k, w.stream_y);
        const int64_t n1 = (off % P->L) / L;
        out_bf16(cre, cim, P->re.data() + n1 * L + p0, P->im.data() + n1 * L + p0, q, x + off + p0, q, w.k);
      });
}

// The spectral step (closed form, monarch.h): Z'[k] = A·U + B·V with A = Z[k], B = conj(Z[m − k]),
// conjugated on the way out for the inverse. Row i of block g pairs with row 15 − i of its mirror
// block, reversed; zm* hold the mirror's spectrum (or, for block 0, the gathered mirrors).
inline void spectral_row(__m512 ar, __m512 ai, __m512 zmr, __m512 zmi, const float* uv, uint32_t* out, const Consts& k) {
  const __m512 ur = _mm512_load_ps(uv), ui = _mm512_load_ps(uv + 16), vr = _mm512_load_ps(uv + 32),
               vi = _mm512_load_ps(uv + 48);
  // B = conj(zm):  Re Z' = ar·ur − ai·ui + zmr·vr + zmi·vi,  Im Z' = ar·ui + ai·ur + zmr·vi − zmi·vr.
  __m512 re = _mm512_fmadd_ps(zmr, vr, _mm512_mul_ps(zmi, vi));
  re = _mm512_fmadd_ps(ar, ur, re);
  re = _mm512_fnmadd_ps(ai, ui, re);
  __m512 im = _mm512_fmsub_ps(zmi, vr, _mm512_mul_ps(zmr, vi));  // −(zmr·vi − zmi·vr)
  im = _mm512_fnmadd_ps(ar, ui, im);
  im = _mm512_fnmadd_ps(ai, ur, im);  // = −Im Z'
  _mm512_storeu_si512(out, pack(re, im, k));
}

// A k-side row (bins k, from Z row z*) and its mirror row (bins m − k, reversed, from p*): both
// products from one (S, D) row and one (sin θ, cos θ) row (monarch.h), conjugated for the inverse.
// 16 bf16 -> 16 fp32 (a shift).
inline __m512 widen16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

inline void spectral_pair_row(const float* zr, const float* zi, const float* pr, const float* pi, const uint16_t* sd,
                              const float* sc, uint32_t* out, uint32_t* pout, const Consts& k) {
  const __m512 ar = _mm512_load_ps(zr), ai = _mm512_load_ps(zi);
  const __m512 br = _mm512_permutexvar_ps(k.rev, _mm512_load_ps(pr)), bi = _mm512_permutexvar_ps(k.rev, _mm512_load_ps(pi));
  const __m512 sr = widen16(sd), si = widen16(sd + 16), dr = widen16(sd + 32), di = widen16(sd + 48),
               sn = _mm512_load_ps(sc), cs = _mm512_load_ps(sc + 16);
  const __m512 ur = _mm512_fnmadd_ps(sn, dr, sr), ui = _mm512_fnmadd_ps(sn, di, si);  // U = S − sin·D
  const __m512 upr = _mm512_fmadd_ps(sn, dr, sr), nupi = _mm512_fmadd_ps(sn, di, si);  // U' = conj(S + sin·D)
  const __m512 cdr = _mm512_mul_ps(cs, dr), cdi = _mm512_mul_ps(cs, di);  // V = (−cdi, cdr), V' = (cdi, cdr)
  // Z'[k] = A·U + conj(Zm)·V,  A = (ar, ai), Zm = (br, bi):
  __m512 re = _mm512_fmsub_ps(bi, cdr, _mm512_mul_ps(br, cdi));
  re = _mm512_fmadd_ps(ar, ur, re);
  re = _mm512_fnmadd_ps(ai, ui, re);
  __m512 nim = _mm512_fmadd_ps(br, cdr, _mm512_mul_ps(bi, cdi));
  nim = _mm512_fmadd_ps(ar, ui, nim);
  nim = _mm512_fmadd_ps(ai, ur, nim);
  nim = _mm512_sub_ps(_mm512_setzero_ps(), nim);
  _mm512_storeu_si512(out, pack(re, nim, k));
  // Z'[m − k] = Zm·U' + conj(A)·V'.
  __m512 re2 = _mm512_fmadd_ps(ar, cdi, _mm512_mul_ps(ai, cdr));
  re2 = _mm512_fmadd_ps(br, upr, re2);
  re2 = _mm512_fmadd_ps(bi, nupi, re2);                                    // − bi·upi, upi = −nupi
  __m512 im2 = _mm512_fmsub_ps(ar, cdr, _mm512_mul_ps(ai, cdi));
  im2 = _mm512_fnmadd_ps(br, nupi, im2);                                   // + br·upi
  im2 = _mm512_fmadd_ps(bi, upr, im2);
  const __m512 nim2 = _mm512_sub_ps(_mm512_setzero_ps(), im2);
  _mm512_storeu_si512(pout, pack(_mm512_permutexvar_ps(k.rev, re2), _mm512_permutexvar_ps(k.rev, nim2), k));
}

// Block g (k side) with its mirror block (slots z / p; the same for a self-mirrored block).
[[gnu::noinline]] void spectral_pair(const MonarchPlan& mp, const uint16_t* sd, int64_t g, const float* zre, const float* zim, const float* pre,
                   const float* pim, uint32_t* ytile, uint32_t* ptile, const Consts& k) {
  const int64_t r0 = mp.kside_row[size_t(g)];
  const int rows = zre == pre ? 8 : 16;
  for (int i = 0; i < rows; ++i)
    spectral_pair_row(zre + 16 * i, zim + 16 * i, pre + 16 * (15 - i), pim + 16 * (15 - i), sd + (r0 + i) * 64,
                      mp.sc.data() + (r0 + i) * 32, ytile + 16 * i, ptile + 16 * (15 - i), k);
}

// Block 0 holds bin 0 and mirrors within itself in another pattern: the mirrors are gathered.
void spectral_block0(Row& w, const float* uv, const float* zre, const float* zim, uint32_t* ytile) {
  alignas(64) float zmr[16], zmi[16];
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      const int pp = w.mp.part0[size_t(16 * i + j)];
      zmr[j] = zre[pp];
      zmi[j] = zim[pp];
    }
    spectral_row(_mm512_load_ps(zre + 16 * i), _mm512_load_ps(zim + 16 * i), _mm512_load_ps(zmr), _mm512_load_ps(zmi),
                 uv + i * 64, ytile + 16 * i, w.k);
  }
}

// The inner pass over all 256-blocks: last two forward stages, spectral step (with the mirrored
// block), first two inverse stages; in batches of whole mirrored pairs.
[[gnu::noinline]] void inner_pass(Row& w, int64_t channel, float* y) {
  const MonarchPlan& mp = w.mp;
  Scratch& s = w.s;
  const uint16_t* sd = mp.channel_sd(channel);
  const float* uv0 = mp.channel_uv0(channel);
  const TwiddleTable& T = mp.stage[size_t(w.inner())];
  const TwiddleTable* P = w.inner() > 0 ? &mp.stage[size_t(w.inner() - 1)] : nullptr;
  const int64_t nb = mp.m / 256;
  uint32_t* x = w.x;
  int64_t blk[Scratch::kBatch];
  int slot_of_partner[Scratch::kBatch];
  int64_t g = 0;
  while (g < nb) {
    int cnt = 0;
    for (; g < nb && cnt + 2 <= Scratch::kBatch; ++g) {
      const int64_t g2 = mp.partner[size_t(g)];
      if (g2 < g) continue;
      blk[cnt] = g;
      if (g2 == g) {
        slot_of_partner[cnt] = cnt;
        ++cnt;
      } else {
        blk[cnt + 1] = g2;
        slot_of_partner[cnt] = cnt + 1;
        slot_of_partner[cnt + 1] = cnt;
        cnt += 2;
      }
    }
    if (cnt == 0) continue;
    // The (S, D) rows of this batch stream from memory (8 bytes per bin per channel): request them
    // now so the transfer overlaps the batch's tile work.
    for (int b = 0; b < cnt; ++b) {
      const int64_t r0 = mp.kside_row[size_t(blk[b])];
      if (blk[b] == 0 || r0 < 0) continue;
      const char* p = reinterpret_cast<const char*>(sd + r0 * 64);
      const int lines = (slot_of_partner[b] == b ? 8 : 16) * 2;  // 128 bytes per row
      for (int l = 0; l < lines; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
    }
    // Forward L = 256 stage down the columns, twiddles W_256^{k1 p}.
    pipelined(
        cnt, s,
        [&](int64_t b, int64_t* stride) {
          *stride = 64;
          return x + 256 * blk[b];
        },
        [&](int64_t b, const float* cre, const float* cim) {
          out_bf16(cre, cim, T.re.data(), T.im.data(), 16, s.btile[b], 16, w.k);
        });
    // Forward L = 16 stage across the rows (the spectra), then the spectral step, per unit (a
    // mirrored pair, or a block that mirrors itself): the tiles of unit u + 1 are issued before the
    // vector work of unit u, so the matrix unit and the vector units run at the same time.
    int unit_slot[Scratch::kBatch], units = 0;
    for (int b = 0; b < cnt; ++b)
      if (slot_of_partner[b] >= b) unit_slot[units++] = b;
    const auto across = [&](int u) {
      const int b = unit_slot[u], pb = slot_of_partner[b];
      dft_across(s.btile[b], s.bzre[b], s.bzim[b]);
      if (pb != b) dft_across(s.btile[pb], s.bzre[pb], s.bzim[pb]);
    };
    across(0);
    for (int u = 0; u < units; ++u) {
      if (u + 1 < units) across(u + 1);
      const int b = unit_slot[u], pb = slot_of_partner[b];
      if (blk[b] == 0) spectral_block0(w, uv0, s.bzre[b], s.bzim[b], s.bytile[b]);
      else spectral_pair(mp, sd, blk[b], s.bzre[b], s.bzim[b], s.bzre[pb], s.bzim[pb], s.bytile[b], s.bytile[pb], w.k);
    }
    // Inverse L = 16 across the rows, twiddles W_256^{i n}; then L = 256 down the columns.
    pipelined<Tiles::Across>(
        cnt, s,
        [&](int64_t b, int64_t* stride) {
          *stride = 64;
          return s.bytile[b];
        },
        [&](int64_t b, const float* cre, const float* cim) {
          out_bf16(cre, cim, T.re.data(), T.im.data(), 16, s.btile[b], 16, w.k);
        });
    pipelined(
        cnt, s,
        [&](int64_t b, int64_t* stride) {
          *stride = 64;
          return s.btile[b];
        },
        [&](int64_t b, const float* cre, const float* cim) {
          const int64_t gb = blk[b];
          if (P == nullptr) return out_f32(cre, cim, y, 256 * gb, 16, mp.n / 2, w.k, w.stream_y);
          const int64_t n1 = (256 * gb % P->L) / 256;
          out_bf16(cre, cim, P->re.data() + n1 * 256, P->im.data() + n1 * 256, 16, x + 256 * gb, 16, w.k);
        });
  }
}

void conv_row(Row& w, int64_t channel, const uint16_t* u, float* y) {
  const MonarchPlan& mp = w.mp;
  int64_t si = w.first16();
  if (mp.r == 1 && w.inner() > 0) {  // the first radix-16 stage reads the input row
    const uint32_t* u32 = reinterpret_cast<const uint32_t*>(u);
    if (mp.causal()) outer_forward<Tiles::DownHalf>(w, 0, u32);
    else outer_forward(w, 0, u32);
    si = 1;
  } else {
    top_forward(w, u);
  }
  for (; si < w.inner(); ++si) outer_forward(w, si, w.x);
  inner_pass(w, channel, y);
  for (int64_t si = w.inner() - 1; si >= w.first16(); --si) outer_inverse(w, si, y);
  if (mp.r > 1) top_inverse(w, y);
}

}  // namespace

void fftconv_bf16_monarch16_rows__amx(const MonarchPlan& mp, int64_t row0, int64_t row1, const uint16_t* u, float* y,
                            void* workspace, bool stream_y) {
  // Tiles 0-4 as 16 x 64 bytes; 5: an 8-row data tile; 6, 7: the DFT tiles' first 8 column pairs
  // (16 x 32 bytes) — the causal first stage's half product.
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = t == 6 || t == 7 ? 32 : 64;
    cfg.rows[t] = t == 5 ? 8 : 16;
  }
  __asm__ __volatile__("" : : "r"(&cfg) : "memory");  // see load_tile_config_16x64
  _tile_loadconfig(&cfg);
  _tile_loadd(3, mp.dft[0], 64);
  _tile_loadd(4, mp.dft[1], 64);
  _tile_loadd(6, mp.dft[0], 64);
  _tile_loadd(7, mp.dft[1], 64);
  const Consts k;
  auto* x = static_cast<uint32_t*>(workspace);
  auto* s = reinterpret_cast<Scratch*>(static_cast<char*>(workspace) + 4 * mp.m);
  Row w{mp, x, *s, k, stream_y};
  for (int64_t row = row0; row < row1; ++row)
    conv_row(w, row % mp.h, u + row * mp.n, y + row * mp.n);
  if (stream_y) _mm_sfence();  // the streamed y is visible before the caller's threads sync
  _tile_release();
}

}  // namespace tz::kernels::fft
