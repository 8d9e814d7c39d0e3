// AVX-512 VNNI kernel of the llama.cpp-block GEMM. Per 256-value unit (one K-quant super-block, or
// eight 32-value blocks), the weights are decoded in registers into four 64-byte vectors of u8
// codes in the activations' natural order plus the sub-blocks' scales a and offsets b (16 floats
// each); then for up to 8 tokens at a time: four vpdpbusd (u8 codes × s8 activations → 16 int32
// lanes of 4 products), each lane scaled by its 16-value sub-block's a·d16, and the offsets as
// one FMA b·s16. Nothing is written back: the codes never leave registers. Prefill decodes every
// row once into 16-row panels instead ("prefill: rows in lanes" below).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/ggml/decode.h"
#include "kernels/ggml/ggml_gemm.h"
#include "kernels/mask_avx512.h"
#include "kernels/transpose16_avx512.h"
#include "tensorzip/convert.h"
#include "tensorzip/io/gguf.h"
#include "kernels/ggml/decoders.inc"

namespace tz::kernels {

DecodeRowFn ggml_decoder__avx512(uint32_t type) { TZ_GGML_DECODERS }

namespace {

// The decoders' outputs must stay in registers: a call would pass them through memory.
#define TZ_INLINE __attribute__((always_inline)) inline

// ---------------------------------------------------------------- helpers

// A growable 64-byte-aligned byte buffer (per-thread scratch).
class AlignedBytes {
 public:
  uint8_t* get(size_t n) {
    if (n > cap_) {
      std::free(p_);
      cap_ = (n + 63) / 64 * 64;
      p_ = static_cast<uint8_t*>(std::aligned_alloc(64, cap_));
    }
    return p_;
  }
  ~AlignedBytes() { std::free(p_); }

 private:
  uint8_t* p_ = nullptr;
  size_t cap_ = 0;
};

// Decode streams each weight byte once. On the q4_0 kernel (rows_q4_0) the hardware prefetcher
// alone left it at ~22 GB/s on one Zen 5 core and ~36 GB/s on two; software prefetches this far
// ahead took it to ~25 / ~45 GB/s (11008×4096, cold; 1–2 KB ahead gained less, 8 KB no more).
// The other types' decode reads the same rate without them (q8_0, q4_K, q6_K: ~27 / ~50 GB/s;
// prefetching there measured 0–5 % slower).
constexpr int64_t kStreamAhead = 4096;
template <int Lines>
TZ_INLINE void prefetch_lines(const uint8_t* p) {
  for (int i = 0; i < Lines; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + 64 * i), _MM_HINT_T0);
}

inline uint16_t ld16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline __m256i ld32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i ld16b(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m512i cat(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
inline __m256i cat(__m128i lo, __m128i hi) { return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1); }

// Eight per-block values, each repeated for the block's two 16-value halves.
inline __m512 dup2(__m256 v) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(v));
}

// The f16 scales of eight blocks of `stride` bytes, at byte `off` of each.
inline __m256 f16x8(const uint8_t* p, int stride, int off) {
  const __m128i h = _mm_setr_epi16(short(ld16(p + off)), short(ld16(p + stride + off)), short(ld16(p + 2 * stride + off)),
                                   short(ld16(p + 3 * stride + off)), short(ld16(p + 4 * stride + off)),
                                   short(ld16(p + 5 * stride + off)), short(ld16(p + 6 * stride + off)),
                                   short(ld16(p + 7 * stride + off)));
  return _mm256_cvtph_ps(h);
}

// Two 16-byte nibble arrays (two 32-value blocks) → their 64 codes in natural order:
// [block0 low nibbles, block0 high, block1 low, block1 high].
inline __m512i nibbles2(__m128i q0, __m128i q1) {
  const __m256i v = cat(q0, q1), m = _mm256_set1_epi8(0x0f);
  const __m512i z = cat(_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16(v, 4), m));  // [lo0 lo1 hi0 hi1]
  return _mm512_shuffle_i64x2(z, z, 0xD8);                                                        // [lo0 hi0 lo1 hi1]
}

// Bits of a 32-byte array broadcast to both halves, shifted by s0 (low 32 bytes) and s1 (high):
// byte i of the result is bits s.. of byte i % 32 (16-bit shifts; the byte masks that follow keep
// each byte's own bits, valid for s <= 7).
inline __m512i shifted2(__m256i v, int s0, int s1) {
  const __m512i b = _mm512_broadcast_i64x4(v);
  const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16(short(s0)), _mm256_set1_epi16(short(s1)), 1);
  return _mm512_srlv_epi16(b, sh);
}

// Integer sub-block scales (K-quants, decode): each 128-bit lane k of a decoded piece c (dwords
// 4k..4k+3 after vpdpbusd) covers 16 values of one scale group, Order::group(c, k) (the decoders
// keep the bits where the block has them; Order::permute_acts puts the activations in the same
// order). packs(p0, p1) puts lane k's four dwords of p0 in words 8k..8k+3 and p1's in 8k+4..8k+7;
// s01 / s23 hold each word's scale for vpdpwssd. `words`: the unit's scales as int16, by group.
template <class Order>
TZ_INLINE void scale_words(__m512i words, __m512i& s01, __m512i& s23) {
  struct Idx {
    alignas(64) int16_t lo[32], hi[32];
  };
  static constexpr Idx idx = [] {
    Idx t{};
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 8; ++i) {
        t.lo[8 * k + i] = int16_t(Order::group(i < 4 ? 0 : 1, k));
        t.hi[8 * k + i] = int16_t(Order::group(i < 4 ? 2 : 3, k));
      }
    return t;
  }();
  s01 = _mm512_permutexvar_epi16(_mm512_load_si512(idx.lo), words);
  s23 = _mm512_permutexvar_epi16(_mm512_load_si512(idx.hi), words);
}

// ---------------------------------------------------------------- decoders: one 256-value unit
// unit(p, u, a, b): p at the unit's first byte; u[4] the 256 codes; a, b per 16-value sub-block.

struct Q4_0 {
  static constexpr int kBlock = 32, kBytes = 18;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    for (int c = 0; c < 4; ++c) u[c] = nibbles2(ld16b(p + 36 * c + 2), ld16b(p + 36 * c + 20));
    const __m256 d = f16x8(p, 18, 0);
    a = dup2(d);
    b = dup2(_mm256_mul_ps(d, _mm256_set1_ps(-8.f)));
  }
};

struct Q4_1 {
  static constexpr int kBlock = 32, kBytes = 20;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    for (int c = 0; c < 4; ++c) u[c] = nibbles2(ld16b(p + 40 * c + 4), ld16b(p + 40 * c + 24));
    a = dup2(f16x8(p, 20, 0));
    b = dup2(f16x8(p, 20, 2));
  }
};

template <bool kMin> struct Q5 {
  static constexpr int kBlock = 32, kBytes = kMin ? 24 : 22, kQh = kMin ? 4 : 2;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    const __m512i sixteen = _mm512_set1_epi8(16);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* b0 = p + 2 * c * kBytes;
      const uint8_t* b1 = b0 + kBytes;
      uint32_t h0, h1;
      std::memcpy(&h0, b0 + kQh, 4);
      std::memcpy(&h1, b1 + kQh, 4);
      const __m512i lo = nibbles2(ld16b(b0 + kQh + 4), ld16b(b1 + kQh + 4));
      u[c] = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(__mmask64(h0) | (__mmask64(h1) << 32), sixteen));  // bit j = value j
    }
    const __m256 d = f16x8(p, kBytes, 0);
    a = dup2(d);
    b = kMin ? dup2(f16x8(p, kBytes, 2)) : dup2(_mm256_mul_ps(d, _mm256_set1_ps(-16.f)));
  }
};

struct Q8_0 {
  static constexpr int kBlock = 32, kBytes = 34;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    for (int c = 0; c < 4; ++c) u[c] = _mm512_xor_si512(cat(ld32(p + 68 * c + 2), ld32(p + 68 * c + 36)), flip);
    const __m256 d = f16x8(p, 34, 0);
    a = dup2(d);
    b = dup2(_mm256_mul_ps(d, _mm256_set1_ps(-128.f)));
  }
};

// The IQ4 codebook + 128 (u8), in every 128-bit lane for vpshufb.
inline __m512i iq4_table() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, char(129), char(141), char(153), char(166),
                                              char(181), char(197), char(217), char(241)));
}

struct IQ4_NL {
  static constexpr int kBlock = 32, kBytes = 18;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    const __m512i tab = iq4_table();
    for (int c = 0; c < 4; ++c) u[c] = _mm512_shuffle_epi8(tab, nibbles2(ld16b(p + 36 * c + 2), ld16b(p + 36 * c + 20)));
    const __m256 d = f16x8(p, 18, 0);
    a = dup2(d);
    b = dup2(_mm256_mul_ps(d, _mm256_set1_ps(-128.f)));
  }
};

struct IQ4_XS {
  static constexpr int kBlock = 256, kBytes = 136;
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    const __m512i tab = iq4_table();
    const uint8_t* qs = p + 8;
    for (int c = 0; c < 4; ++c) u[c] = _mm512_shuffle_epi8(tab, nibbles2(ld16b(qs + 32 * c), ld16b(qs + 32 * c + 16)));
    // Sub-block ib's 6-bit scale: nibble ib of scales_l (a u32), 2 bits of scales_h at 2·ib; in
    // vector lanes (scalar stores reloaded as a vector would stall store forwarding).
    uint32_t sl;
    std::memcpy(&sl, p + 4, 4);
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(sl)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                        _mm256_set1_epi32(15));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(ld16(p + 2)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                        _mm256_set1_epi32(3));
    const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
    const __m256 dl = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(ld16(p))), _mm256_cvtepi32_ps(ls));
    a = dup2(dl);
    b = dup2(_mm256_mul_ps(dl, _mm256_set1_ps(-128.f)));
  }
};

// Q4_K / Q5_K: the eight 6-bit (scale, min) pairs unpacked 4 bytes at a time, each set of eight
// returned in a register (a store reloaded wider would stall store forwarding).
inline void k4_scales(const uint8_t* sc12, __m128i* sc, __m128i* mn) {
  uint32_t t[3];
  std::memcpy(t, sc12, 12);
  const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
  const uint64_t s0 = t[0] & m6, s1 = (t[2] & m4) | (((t[0] >> 6) & m2) << 4);
  const uint64_t n0 = t[1] & m6, n1 = ((t[2] >> 4) & m4) | (((t[1] >> 6) & m2) << 4);
  *sc = _mm_cvtsi64_si128(int64_t(s0 | (s1 << 32)));
  *mn = _mm_cvtsi64_si128(int64_t(n0 | (n1 << 32)));
}

template <bool kFive> struct QK {
  static constexpr int kBlock = 256, kBytes = kFive ? 176 : 144;
  // Decode leaves the nibbles where the block has them: piece 2h + nib, byte j = value
  // 64·(2h + j/32) + 32·nib + j%32 (scale group 2·(2h + j/32) + nib); the activations are
  // permuted to match (permute_acts), once per call instead of once per row.
  struct Order {
    static constexpr int group(int c, int k) { return 2 * (2 * (c / 2) + k / 2) + c % 2; }
  };
  static void permute_acts(const int8_t* q, int8_t* out) {
    for (int c = 0; c < 4; ++c) {
      const int8_t* src = q + 128 * (c / 2) + 32 * (c % 2);
      std::memcpy(out + 64 * c, src, 32);
      std::memcpy(out + 64 * c + 32, src + 64, 32);
    }
  }
  TZ_INLINE static void codes_in_place(const uint8_t* p, __m512i* u) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t* ql = p + (kFive ? 48 : 16);
    for (int h = 0; h < 2; ++h) {
      const __m512i v = _mm512_loadu_si512(ql + 64 * h);
      u[2 * h] = _mm512_and_si512(v, m4);
      u[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    if (kFive) {  // bit g of qh[i] is the 5th bit of value 32g + i
      const __m256i qh = ld32(p + 16);
      for (int c = 0; c < 4; ++c) {
        const int g0 = 4 * (c / 2) + c % 2;
        const __m512i h = _mm512_and_si512(shifted2(qh, g0, g0 + 2), _mm512_set1_epi8(1));
        u[c] = _mm512_or_si512(u[c], _mm512_slli_epi16(h, 4));
      }
    }
  }
  TZ_INLINE static void codes(const uint8_t* p, __m512i* u) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t* ql = p + (kFive ? 48 : 16);
    for (int h = 0; h < 2; ++h) {  // 64 bytes = pieces 2h, 2h + 1: each 32 bytes hold group 2j low, 2j + 1 high
      const __m512i v = _mm512_loadu_si512(ql + 64 * h);
      const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      u[2 * h] = _mm512_shuffle_i64x2(lo, hi, 0x44);      // [lo bytes 0..31, hi bytes 0..31]
      u[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);  // [lo bytes 32..63, hi bytes 32..63]
    }
    for (int j = 0; j < 4; ++j) {
      if (kFive) {
        const __m512i h = _mm512_and_si512(shifted2(ld32(p + 16), 2 * j, 2 * j + 1), _mm512_set1_epi8(1));
        u[j] = _mm512_or_si512(u[j], _mm512_slli_epi16(h, 4));
      }
    }
  }
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    codes(p, u);
    __m128i sc, mn;
    k4_scales(p + 4, &sc, &mn);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(ld16(p))), dmin = _mm256_set1_ps(-_cvtsh_ss(ld16(p + 2)));
    a = dup2(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc))));
    b = dup2(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn))));
  }
  // w = d·sc·u + b: integer scales as int16 words (scale_words), the super-block scale d alone.
  TZ_INLINE static void unit_int(const uint8_t* p, __m512i* u, __m512i& s01, __m512i& s23, float& d, __m512& b) {
    codes_in_place(p, u);
    __m128i sc, mn;
    k4_scales(p + 4, &sc, &mn);
    scale_words<Order>(_mm512_castsi128_si512(_mm_cvtepu8_epi16(sc)), s01, s23);
    d = _cvtsh_ss(ld16(p));
    b = dup2(_mm256_mul_ps(_mm256_set1_ps(-_cvtsh_ss(ld16(p + 2))), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn))));
  }
};

// The order in which Q2_K, Q3_K and Q6_K lay their bits: the two 128-value halves side by side,
// so piece c = values [32c, 32c + 32) then [128 + 32c, 128 + 32c + 32); one 64-byte load of both
// halves' bit fields then yields a whole piece per shift.
struct SplitHalvesOrder {
  static constexpr int group(int c, int k) { return k < 2 ? 2 * c + k : 8 + 2 * c + (k - 2); }  // per 16 values
  static void permute_acts(const int8_t* q, int8_t* out) {
    for (int c = 0; c < 4; ++c) {
      std::memcpy(out + 64 * c, q + 32 * c, 32);
      std::memcpy(out + 64 * c + 32, q + 128 + 32 * c, 32);
    }
  }
};

struct Q6_K : SplitHalvesOrder {
  static constexpr int kBlock = 256, kBytes = 210;
  // In SplitHalvesOrder: low 4 bits from ql (halves at p and p + 64; values 32c.. in the low
  // nibbles of bytes 32c..  for c < 2, the high nibbles of bytes 32(c-2).. for c >= 2), bits 4-5
  // from crumb c of qh (both halves: p + 128, 64 bytes).
  TZ_INLINE static void codes_in_place(const uint8_t* p, __m512i* u) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i q0 = cat(ld32(p), ld32(p + 64)), q1 = cat(ld32(p + 32), ld32(p + 96));
    const __m512i qh = _mm512_loadu_si512(p + 128);
    const __m512i h0 = _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30), h1 = _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30);
    const __m512i h2 = _mm512_and_si512(qh, m30), h3 = _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30);
    // (a & 0x0f) | h: vpternlog 0xF8 = A | (B & C) with A = h, B = a, C = m4.
    u[0] = _mm512_ternarylogic_epi32(h0, q0, m4, 0xF8);
    u[1] = _mm512_ternarylogic_epi32(h1, q1, m4, 0xF8);
    u[2] = _mm512_ternarylogic_epi32(h2, _mm512_srli_epi16(q0, 4), m4, 0xF8);
    u[3] = _mm512_ternarylogic_epi32(h3, _mm512_srli_epi16(q1, 4), m4, 0xF8);
  }
  TZ_INLINE static void codes(const uint8_t* p, __m512i* u) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {  // 128 values: ql[64] low nibbles = values 0..63, high = 64..127
      const __m512i ql = _mm512_loadu_si512(p + 64 * h);
      const __m256i qh = ld32(p + 128 + 32 * h);
      const __m512i hi0 = _mm512_and_si512(shifted2(qh, 0, 2), m2), hi1 = _mm512_and_si512(shifted2(qh, 4, 6), m2);
      u[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(hi0, 4));
      u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_slli_epi16(hi1, 4));
    }
  }
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    codes(p, u);
    const __m512 dl = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(ld16(p + 208))), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16b(p + 192))));
    a = dl;
    b = _mm512_mul_ps(dl, _mm512_set1_ps(-32.f));
  }
  TZ_INLINE static void unit_int(const uint8_t* p, __m512i* u, __m512i& s01, __m512i& s23, float& d, __m512& b) {
    codes_in_place(p, u);
    const __m128i sc = ld16b(p + 192);
    scale_words<SplitHalvesOrder>(_mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc)), s01, s23);
    d = _cvtsh_ss(ld16(p + 208));
    b = _mm512_mul_ps(_mm512_set1_ps(-32.f * d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)));
  }
};

struct Q2_K : SplitHalvesOrder {
  static constexpr int kBlock = 256, kBytes = 84;
  TZ_INLINE static void codes_in_place(const uint8_t* p, __m512i* u) {  // SplitHalvesOrder: crumb c of both halves
    const __m512i m2 = _mm512_set1_epi8(3), q = _mm512_loadu_si512(p + 16);
    u[0] = _mm512_and_si512(q, m2);
    u[1] = _mm512_and_si512(_mm512_srli_epi16(q, 2), m2);
    u[2] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m2);
    u[3] = _mm512_and_si512(_mm512_srli_epi16(q, 6), m2);
  }
  TZ_INLINE static void codes(const uint8_t* p, __m512i* u) {
    const __m512i m2 = _mm512_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = ld32(p + 16 + 32 * h);
      u[2 * h] = _mm512_and_si512(shifted2(q, 0, 2), m2);
      u[2 * h + 1] = _mm512_and_si512(shifted2(q, 4, 6), m2);
    }
  }
  TZ_INLINE static void unit_int(const uint8_t* p, __m512i* u, __m512i& s01, __m512i& s23, float& d, __m512& b) {
    codes_in_place(p, u);
    const __m128i s = ld16b(p);
    scale_words<SplitHalvesOrder>(_mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(s, _mm_set1_epi8(15)))), s01, s23);
    d = _cvtsh_ss(ld16(p + 80));
    b = _mm512_mul_ps(_mm512_set1_ps(-_cvtsh_ss(ld16(p + 82))), _mm512_cvtepi32_ps(_mm512_srli_epi32(_mm512_cvtepu8_epi32(s), 4)));
  }
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    codes(p, u);
    const __m512i s = _mm512_cvtepu8_epi32(ld16b(p));
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(ld16(p + 80))), dmin = _mm512_set1_ps(-_cvtsh_ss(ld16(p + 82)));
    a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(15))));
    b = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_srli_epi32(s, 4)));
  }
};

struct Q3_K : SplitHalvesOrder {
  static constexpr int kBlock = 256, kBytes = 110;
  // SplitHalvesOrder: crumb c of both halves (p + 32, 64 bytes); the third bit of value 32b + j is
  // bit b of hm[j], so piece c takes bits c (low 32 bytes) and 4 + c (high) of hm.
  TZ_INLINE static void codes_in_place(const uint8_t* p, __m512i* u) {
    const __m512i m2 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4), q = _mm512_loadu_si512(p + 32);
    const __m256i hm = ld32(p);
    for (int c = 0; c < 4; ++c) {
      const __m512i hb = _mm512_and_si512(_mm512_slli_epi16(shifted2(hm, c, 4 + c), 2), m4);
      u[c] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 2 * c), m2), hb);
    }
  }
  TZ_INLINE static void codes(const uint8_t* p, __m512i* u) {
    const __m512i m2 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(1);
    const __m256i hm = ld32(p);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = ld32(p + 32 + 32 * h);
      for (int c = 0; c < 2; ++c) {
        const __m512i lo = _mm512_and_si512(shifted2(q, 4 * c, 4 * c + 2), m2);
        const __m512i hb = _mm512_and_si512(shifted2(hm, 4 * h + 2 * c, 4 * h + 2 * c + 1), m1);
        u[2 * h + c] = _mm512_or_si512(lo, _mm512_slli_epi16(hb, 2));
      }
    }
  }
  // The 16 signed 6-bit scales as int32.
  TZ_INLINE static __m512i scales(const uint8_t* p) {
    // Scale i: low 4 bits = nibble (i / 8) of byte i % 8; high 2 bits = crumb i / 4 of byte 8 + i % 4.
    uint64_t s8;
    uint32_t s4;
    std::memcpy(&s8, p + 96, 8);
    std::memcpy(&s4, p + 104, 4);
    const __m512i lo = _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_set1_epi64x(int64_t(s8))),
                          _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4)),
        _mm512_set1_epi32(15));
    const __m512i hi = _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_set1_epi32(int(s4)), _mm512_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26, 4, 12, 20, 28, 6, 14, 22, 30)),
        _mm512_set1_epi32(3));
    return _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
  }
  TZ_INLINE static void unit(const uint8_t* p, __m512i* u, __m512& a, __m512& b) {
    codes(p, u);
    const __m512i sc = scales(p);
    a = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(ld16(p + 108))), _mm512_cvtepi32_ps(sc));
    b = _mm512_mul_ps(a, _mm512_set1_ps(-4.f));
  }
  TZ_INLINE static void unit_int(const uint8_t* p, __m512i* u, __m512i& s01, __m512i& s23, float& d, __m512& b) {
    codes_in_place(p, u);
    const __m512i sc = scales(p);
    scale_words<SplitHalvesOrder>(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(sc)), s01, s23);
    d = _cvtsh_ss(ld16(p + 108));
    b = _mm512_mul_ps(_mm512_set1_ps(-4.f * d), _mm512_cvtepi32_ps(sc));
  }
};

// Any type, through decode.h into a stack buffer: ternary types, and the last partial unit of a
// row of 32-value blocks (`values` < 256; the rest zero).
inline void unit_generic(DecodeRowFn decode, const uint8_t* p, int64_t values, __m512i* u, __m512& a, __m512& b) {
  alignas(64) uint8_t ub[256] = {};
  alignas(64) float ab[16] = {}, bb[16] = {};
  decode(p, values, ub, ab, bb);
  for (int c = 0; c < 4; ++c) u[c] = _mm512_load_si512(ub + 64 * c);
  a = _mm512_load_ps(ab);
  b = _mm512_load_ps(bb);
}

// ---------------------------------------------------------------- dot products

// acc[t] += Σ over the unit at value offset `off` for NT tokens.
template <int NT>
TZ_INLINE void dot_unit(const __m512i* u, __m512 av, __m512 bv, const Q8Row* x, int64_t off, __m512* acc) {
  // Lane l of piece c (values 64c + 4l .. +3) belongs to sub-block 4c + l/4.
  const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i four = _mm512_set1_epi32(4);
  const __m512i idx1 = _mm512_add_epi32(idx0, four), idx2 = _mm512_add_epi32(idx1, four), idx3 = _mm512_add_epi32(idx2, four);
  for (int t = 0; t < NT; ++t) {
    const int8_t* q = x[t].q + off;
    const __m512 f = _mm512_mul_ps(av, _mm512_loadu_ps(x[t].d16 + off / 16));
    __m512 s = _mm512_fmadd_ps(bv, _mm512_loadu_ps(x[t].s16 + off / 16), acc[t]);
    const __m512i z = _mm512_setzero_si512();
    const __m512i p0 = _mm512_dpbusd_epi32(z, u[0], _mm512_loadu_si512(q));
    const __m512i p1 = _mm512_dpbusd_epi32(z, u[1], _mm512_loadu_si512(q + 64));
    const __m512i p2 = _mm512_dpbusd_epi32(z, u[2], _mm512_loadu_si512(q + 128));
    const __m512i p3 = _mm512_dpbusd_epi32(z, u[3], _mm512_loadu_si512(q + 192));
    s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx0, f), s);
    s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(idx1, f), s);
    s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p2), _mm512_permutexvar_ps(idx2, f), s);
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p3), _mm512_permutexvar_ps(idx3, f), s);
  }
}

// The K-quants: integer sub-block scales. Each piece's dwords (4 products, |·| <= 4·63·127 for
// 6-bit codes) pack to int16 and meet their scales in vpdpwssd, so a unit's dot product stays in
// int32 (|·| < 2^24, exact in f32) until one convert and one FMA by d·d_x (q8_K: one activation
// scale per 256 values) — instead of a convert, permute and FMA per piece.
template <int NT>
TZ_INLINE void dot_unit_int(const __m512i* u, __m512i s01, __m512i s23, float d, __m512 bv, const Q8Row* x, int64_t off, __m512* acc) {
  for (int t = 0; t < NT; ++t) {
    const int8_t* q = x[t].q + off;
    const __m512i z = _mm512_setzero_si512();
    const __m512i p0 = _mm512_dpbusd_epi32(z, u[0], _mm512_loadu_si512(q));
    const __m512i p1 = _mm512_dpbusd_epi32(z, u[1], _mm512_loadu_si512(q + 64));
    const __m512i p2 = _mm512_dpbusd_epi32(z, u[2], _mm512_loadu_si512(q + 128));
    const __m512i p3 = _mm512_dpbusd_epi32(z, u[3], _mm512_loadu_si512(q + 192));
    __m512i i = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(p0, p1), s01);
    i = _mm512_dpwssd_epi32(i, _mm512_packs_epi32(p2, p3), s23);
    const __m512 s = _mm512_fmadd_ps(bv, _mm512_loadu_ps(x[t].s16 + off / 16), acc[t]);
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_set1_ps(d * x[t].d16[off / 16]), s);
  }
}

template <class D>
concept PermutesActs = requires(const int8_t* q, int8_t* o) { D::permute_acts(q, o); };
template <class D>
concept IntScaled = requires(const uint8_t* p, __m512i* u, __m512i& s, float& d, __m512& b) { D::unit_int(p, u, s, s, d, b); };

// Rows [r0, r1) for NT tokens starting at x, outputs y[t·ldy + r].
template <class D, int NT>
void rows_nt(const GgmlRowsArgs& g, const Q8Row* x, float* y) {
  const GgmlMatrix& w = *g.w;
  const int64_t full = w.cols / 256, rest = w.cols % 256;  // rest: 32-value-block rows only
  const int64_t unit_bytes = 256 / D::kBlock * D::kBytes;
  const DecodeRowFn generic = ggml_decoder__avx512(w.type);
  Q8Row xp[NT];
  if constexpr (PermutesActs<D>) {
    thread_local AlignedBytes buf;
    const int64_t k_pad = ggml_k_pad(w.cols);
    int8_t* q = reinterpret_cast<int8_t*>(buf.get(size_t(NT * k_pad)));
    for (int t = 0; t < NT; ++t) {
      for (int64_t v0 = 0; v0 < k_pad; v0 += 256) D::permute_acts(x[t].q + v0, q + t * k_pad + v0);
      xp[t] = {q + t * k_pad, x[t].d16, x[t].s16};
    }
    x = xp;
  }
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = w.row(r);
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    __m512i u[4];
    __m512 a, b;
    for (int64_t un = 0; un < full; ++un) {
      if constexpr (IntScaled<D>) {
        __m512i s01, s23;
        float d;
        D::unit_int(row + un * unit_bytes, u, s01, s23, d, b);
        dot_unit_int<NT>(u, s01, s23, d, b, x, 256 * un, acc);
      } else {
        D::unit(row + un * unit_bytes, u, a, b);
        dot_unit<NT>(u, a, b, x, 256 * un, acc);
      }
    }
    if (rest > 0) {
      unit_generic(generic, row + full * unit_bytes, rest, u, a, b);
      dot_unit<NT>(u, a, b, x, 256 * full, acc);
    }
    for (int t = 0; t < NT; ++t) y[t * g.ldy + r] = _mm512_reduce_add_ps(acc[t]);
  }
}

// Q4_0 decode, blocks in lanes. Eight 18-byte blocks (one 256-value unit) give two vectors of
// nibble bytes, A = the 16 code bytes of blocks 0..3 and B = blocks 4..7, each block one 128-bit
// lane, gathered by word permutes from the unit's three cache lines (every field sits at an even
// offset). Lanes 4k..4k+3 of A's low and high nibbles then belong to block k alone, so both
// pieces accumulate into one int32 vector, started from −8·Σq of each block (the q4_0 offset,
// exact in int32), and meet one scale vector: per unit two converts and two FMAs, no per-piece
// permutes. The activations are laid out to match once per call (Q40Acts).
//
// The lines are loaded aligned (masked at the unit's ends): a 144-byte unit starts 0, 16, 32 or
// 48 bytes into a line, and unaligned 64-byte loads that split lines cost a third of the
// streaming rate (two threads, LLaMA-7B-shaped decode: 95 vs 141 tok/s). Hence rows must start
// 16-byte aligned (GGUF data is 32-aligned); other matrices take the natural-order path.
struct alignas(64) Q40Acts {
  int8_t q[256];     // A low (blocks 0..3 values 0..15), A high (16..31), B low, B high; 16 bytes per block
  int32_t init[32];  // A, B: lane 4k = −8·Σq of block k, other lanes 0
  float xs[32];      // A, B: lanes 4k..4k+3 = block k's activation scale
};

inline void q40_acts(const Q8Row& x, int64_t units, Q40Acts* out) {
  for (int64_t un = 0; un < units; ++un) {
    Q40Acts& o = out[un];
    std::memset(o.init, 0, sizeof o.init);
    for (int k = 0; k < 8; ++k) {
      const int8_t* src = x.q + 256 * un + 32 * k;
      const int half = k / 4, kk = k % 4;
      std::memcpy(o.q + 128 * half + 16 * kk, src, 16);
      std::memcpy(o.q + 128 * half + 64 + 16 * kk, src + 16, 16);
      int32_t sum = 0;
      for (int i = 0; i < 32; ++i) sum += src[i];
      o.init[16 * half + 4 * kk] = -8 * sum;
      for (int j = 0; j < 4; ++j) o.xs[16 * half + 4 * kk + j] = x.d16[(256 * un + 32 * k) / 16];
    }
  }
}

// Word indices into (line 0, line 1) for A and the scales of blocks 0..3, into (line 1, line 2)
// for B and the scales of blocks 4..7; one set per 16-byte start offset of the unit in line 0.
struct alignas(64) Q40Idx {
  int16_t a[32], b[32], sa[32], sb[32];
};
constexpr auto kQ40Idx = [] {
  std::array<Q40Idx, 4> t{};
  for (int j = 0; j < 4; ++j) {
    const int o = 8 * j;  // words
    for (int i = 0; i < 32; ++i) {
      t[j].a[i] = int16_t(o + 9 * (i / 8) + 1 + i % 8);  // block k's codes at byte 18k + 2
      t[j].b[i] = int16_t(o + 9 * (i / 8) + 5 + i % 8);  // block 4 + k's at 72 + 18k + 2, from line 1
      t[j].sa[i] = int16_t(i < 16 ? o + 9 * (i / 4) : 0);      // block i / 4's scale, four times
      t[j].sb[i] = int16_t(i < 16 ? o + 9 * (i / 4) + 4 : 0);  // block 4 + i / 4's, from line 1
    }
  }
  return t;
}();

// One unit at p: the codes of blocks 0..3 (A) and 4..7 (B) as low / high nibbles, the scales.
struct Q40Unit {
  __m512i alo, ahi, blo, bhi;
  __m512 da, db;
};
TZ_INLINE Q40Unit q40_unit(const uint8_t* p) {
  const unsigned off = unsigned(reinterpret_cast<uintptr_t>(p) & 63);  // 0, 16, 32 or 48
  const uint8_t* line = p - off;
  const Q40Idx& ix = kQ40Idx[off / 16];
  prefetch_lines<3>(line + kStreamAhead);
  const __m512i l0 = _mm512_maskz_load_epi32(__mmask16(0xffffu << (off / 4)), line);
  const __m512i l1 = _mm512_load_si512(line + 64);
  const __m512i l2 = _mm512_maskz_load_epi32(__mmask16((1u << (off / 4 + 4)) - 1), line + 128);
  const __m512i a = _mm512_permutex2var_epi16(l0, _mm512_load_si512(ix.a), l1);
  const __m512i b = _mm512_permutex2var_epi16(l1, _mm512_load_si512(ix.b), l2);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  return {_mm512_and_si512(a, m4),
          _mm512_and_si512(_mm512_srli_epi16(a, 4), m4),
          _mm512_and_si512(b, m4),
          _mm512_and_si512(_mm512_srli_epi16(b, 4), m4),
          _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(l0, _mm512_load_si512(ix.sa), l1))),
          _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(l1, _mm512_load_si512(ix.sb), l2)))};
}

TZ_INLINE void q40_dot(const Q40Unit& u, const Q40Acts& q, __m512& acc_a, __m512& acc_b) {
  __m512i sa = _mm512_dpbusd_epi32(_mm512_load_si512(q.init), u.alo, _mm512_load_si512(q.q));
  __m512i sb = _mm512_dpbusd_epi32(_mm512_load_si512(q.init + 16), u.blo, _mm512_load_si512(q.q + 128));
  sa = _mm512_dpbusd_epi32(sa, u.ahi, _mm512_load_si512(q.q + 64));
  sb = _mm512_dpbusd_epi32(sb, u.bhi, _mm512_load_si512(q.q + 192));
  acc_a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa), _mm512_mul_ps(u.da, _mm512_load_ps(q.xs)), acc_a);
  acc_b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb), _mm512_mul_ps(u.db, _mm512_load_ps(q.xs + 16)), acc_b);
}

// (Two rows at a time from two stretches of the range, two streams of lines, measured 1.45× slower.)
template <int NT>
void rows_q4_0(const GgmlRowsArgs& g, const Q8Row* x, float* y) {
  const GgmlMatrix& w = *g.w;
  const int64_t units = w.cols / 256;  // callers: cols % 256 == 0, rows 16-byte aligned
  thread_local AlignedBytes buf;
  auto* acts = reinterpret_cast<Q40Acts*>(buf.get(sizeof(Q40Acts) * size_t(NT * units)));
  for (int t = 0; t < NT; ++t) q40_acts(x[t], units, acts + t * units);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = w.row(r);
    __m512 acc_a[NT], acc_b[NT];
    for (int t = 0; t < NT; ++t) acc_a[t] = acc_b[t] = _mm512_setzero_ps();
    for (int64_t un = 0; un < units; ++un) {
      const Q40Unit u = q40_unit(row + 144 * un);
      for (int t = 0; t < NT; ++t) q40_dot(u, acts[t * units + un], acc_a[t], acc_b[t]);
    }
    for (int t = 0; t < NT; ++t) y[t * g.ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc_a[t], acc_b[t]));
  }
}

// The ternary types (and any type without a register decoder) through decode.h.
template <int NT>
void rows_generic(const GgmlRowsArgs& g, const Q8Row* x, float* y) {
  const GgmlMatrix& w = *g.w;
  const auto* ti = io::ggml_type_info(w.type);
  const int64_t unit_bytes = 256 / int64_t(ti->block_values) * int64_t(ti->block_bytes);
  const DecodeRowFn decode = ggml_decoder__avx512(w.type);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    __m512i u[4];
    __m512 a, b;
    for (int64_t v0 = 0; v0 < w.cols; v0 += 256) {
      unit_generic(decode, w.row(r) + v0 / 256 * unit_bytes, std::min<int64_t>(256, w.cols - v0), u, a, b);
      dot_unit<NT>(u, a, b, x, v0, acc);
    }
    for (int t = 0; t < NT; ++t) y[t * g.ldy + r] = _mm512_reduce_add_ps(acc[t]);
  }
}

struct GenericDecoder {  // the ternary types through decode.h (unit_generic)
  static constexpr int kBlock = 256, kBytes = 0;
};

// ---------------------------------------------------------------- prefill: rows in lanes
// Output-stationary, as the int8 prefill of the low-bit GEMM (mpgemm/int8_driver.h): 16 rows are
// the 16 lanes. A panel holds 16 decoded rows as codes [k_pad/4][16 rows][4] (u8) and their
// sub-block a, b as [k_pad/16][16 rows] (f32). Per 4 values the kernel loads two panels' code
// vectors (32 rows) once and broadcasts each token's 4 int8 activations once: 2·NT VPDPBUSD into
// int32 sums, turned into f32 once per sub-block (SUB = 32 values where a type's scales are per
// 32-block, else 16): y += cvt(Σ u·q) · a·d + b·s. No horizontal sums, no activation transpose.

// Row r decoded in natural order: u [k_pad] (zero past cols), a / b [k_pad / 16].
template <class D>
void decode_row_nat(const GgmlMatrix& w, int64_t r, uint8_t* u, float* a, float* b) {
  const int64_t full = w.cols / 256, rest = w.cols % 256, unit_bytes = 256 / D::kBlock * D::kBytes;
  const uint8_t* row = w.row(r);
  __m512i nat[4];
  __m512 av, bv;
  for (int64_t un = 0; un <= full; ++un) {
    if constexpr (std::is_same_v<D, GenericDecoder>) {
      const auto* ti = io::ggml_type_info(w.type);
      const int64_t ub = 256 / int64_t(ti->block_values) * int64_t(ti->block_bytes);
      if (256 * un >= w.cols) break;
      unit_generic(ggml_decoder__avx512(w.type), row + un * ub, std::min<int64_t>(256, w.cols - 256 * un), nat, av, bv);
    } else if (un < full) D::unit(row + un * unit_bytes, nat, av, bv);
    else if (rest > 0) unit_generic(ggml_decoder__avx512(w.type), row + full * unit_bytes, rest, nat, av, bv);
    else break;
    for (int c = 0; c < 4; ++c) _mm512_store_si512(u + 256 * un + 64 * c, nat[c]);
    _mm512_storeu_ps(a + 16 * un, av);
    _mm512_storeu_ps(b + 16 * un, bv);
  }
}

// 16 decoded rows: codes [k_pad/4][16][4], a and b [k_pad/16][16].
struct Panel {
  uint8_t* codes;
  float* a;
  float* b;
};

// Rows [r0, r0 + 16) ∩ [.., r_end) into panel p (rows past r_end: zero codes and scales).
// nat: 16·k_pad bytes, an / bn: 16·k_pad/16 floats of scratch.
template <class D>
void decode_panel(const GgmlMatrix& w, int64_t r0, int64_t r_end, int64_t k_pad, uint8_t* nat, float* an, float* bn,
                  const Panel& p) {
  uint8_t* codes = p.codes;
  float *a = p.a, *b = p.b;
  const int64_t subs = k_pad / 16;
  for (int r = 0; r < 16; ++r) {
    if (r0 + r < r_end) decode_row_nat<D>(w, r0 + r, nat + r * k_pad, an + r * subs, bn + r * subs);
    else std::memset(nat + r * k_pad, 0, size_t(k_pad)), std::fill_n(an + r * subs, subs, 0.f), std::fill_n(bn + r * subs, subs, 0.f);
  }
  __m512i v[16];
  for (int64_t c = 0; c < k_pad / 64; ++c) {  // 16 dwords (4 values each) of every row → 16 [16 rows][4] vectors
    for (int r = 0; r < 16; ++r) v[r] = _mm512_load_si512(nat + r * k_pad + 64 * c);
    transpose16x16_epi32(v);
    for (int j = 0; j < 16; ++j) _mm512_store_si512(codes + (16 * c + j) * 64, v[j]);
  }
  for (int64_t c = 0; c < subs / 16; ++c) {
    for (int r = 0; r < 16; ++r) v[r] = _mm512_castps_si512(_mm512_loadu_ps(an + r * subs + 16 * c));
    transpose16x16_epi32(v);
    for (int j = 0; j < 16; ++j) _mm512_store_si512(a + (16 * c + j) * 16, v[j]);
    for (int r = 0; r < 16; ++r) v[r] = _mm512_castps_si512(_mm512_loadu_ps(bn + r * subs + 16 * c));
    transpose16x16_epi32(v);
    for (int j = 0; j < 16; ++j) _mm512_store_si512(b + (16 * c + j) * 16, v[j]);
  }
}

// y[t][row] for two panels (32 rows) and NT tokens; stores masked by m0 / m1.
template <int NT, int SUB>
void panels_2xNT(const Panel& p0, const Panel& p1, int64_t k_pad, const Q8Row* x, float* y, int64_t ldy, __mmask16 m0,
                 __mmask16 m1) {
  __m512 f0[NT], f1[NT];
  for (int t = 0; t < NT; ++t) f0[t] = f1[t] = _mm512_setzero_ps();
  for (int64_t v0 = 0; v0 < k_pad; v0 += SUB) {
    __m512i s0[NT], s1[NT];
    for (int t = 0; t < NT; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < SUB / 4; ++j) {  // a constant trip count: unrolled, the sums stay in registers
      const int64_t q = v0 / 4 + j;
      const __m512i w0 = _mm512_load_si512(p0.codes + q * 64), w1 = _mm512_load_si512(p1.codes + q * 64);
      for (int t = 0; t < NT; ++t) {
        int32_t xq;
        std::memcpy(&xq, x[t].q + 4 * q, 4);
        const __m512i xv = _mm512_set1_epi32(xq);
        s0[t] = _mm512_dpbusd_epi32(s0[t], w0, xv);
        s1[t] = _mm512_dpbusd_epi32(s1[t], w1, xv);
      }
    }
    // SUB = 32: a, b and the activation scale are the same for both 16-value halves, s adds up.
    const int64_t sub = v0 / 16;
    const __m512 a0 = _mm512_load_ps(p0.a + sub * 16), a1 = _mm512_load_ps(p1.a + sub * 16);
    const __m512 b0 = _mm512_load_ps(p0.b + sub * 16), b1 = _mm512_load_ps(p1.b + sub * 16);
    for (int t = 0; t < NT; ++t) {
      const __m512 d = _mm512_set1_ps(x[t].d16[sub]);
      const __m512 sv = _mm512_set1_ps(SUB == 32 ? x[t].s16[sub] + x[t].s16[sub + 1] : x[t].s16[sub]);
      f0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[t]), _mm512_mul_ps(a0, d), _mm512_fmadd_ps(b0, sv, f0[t]));
      f1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[t]), _mm512_mul_ps(a1, d), _mm512_fmadd_ps(b1, sv, f1[t]));
    }
  }
  for (int t = 0; t < NT; ++t) {
    _mm512_mask_storeu_ps(y + t * ldy, m0, f0[t]);
    _mm512_mask_storeu_ps(y + t * ldy + 16, m1, f1[t]);
  }
}

template <class D>
void rows_prefill(const GgmlRowsArgs& g) {
  const GgmlMatrix& w = *g.w;
  const int64_t k_pad = ggml_k_pad(w.cols), subs = k_pad / 16;
  // Where a and b are per 32 values (32-value blocks; Q4_K, Q5_K and IQ4_XS sub-blocks) — as the
  // activation scale always is — one conversion per 32 values; Q2_K, Q3_K, Q6_K: per 16.
  constexpr int kSub = D::kBlock == 32 || std::is_same_v<D, QK<false>> || std::is_same_v<D, QK<true>> ||
                               std::is_same_v<D, IQ4_XS> ? 32 : 16;
  constexpr int kNt = 4;
  thread_local AlignedBytes nb, cb, sb;
  uint8_t* nat = nb.get(size_t(16 * k_pad));
  uint8_t* codes = cb.get(size_t(2 * 16 * k_pad));
  // a, b of both panels, then the natural-order a, b of the panel being decoded.
  float* f = reinterpret_cast<float*>(sb.get(size_t(6 * 16 * subs) * sizeof(float)));
  const int64_t ps = 16 * subs;
  const Panel p0{codes, f, f + ps}, p1{codes + 16 * k_pad, f + 2 * ps, f + 3 * ps};
  for (int64_t r0 = g.r0; r0 < g.r1; r0 += 32) {
    decode_panel<D>(w, r0, g.r1, k_pad, nat, f + 4 * ps, f + 5 * ps, p0);
    decode_panel<D>(w, r0 + 16, g.r1, k_pad, nat, f + 4 * ps, f + 5 * ps, p1);
    const __mmask16 m0 = first16(g.r1 - r0), m1 = first16(g.r1 - r0 - 16);
    float* y = g.y + r0;
    int64_t t0 = 0;
    for (; t0 + kNt <= g.n; t0 += kNt) panels_2xNT<kNt, kSub>(p0, p1, k_pad, g.x + t0, y + t0 * g.ldy, g.ldy, m0, m1);
    switch (g.n - t0) {
      case 3: panels_2xNT<3, kSub>(p0, p1, k_pad, g.x + t0, y + t0 * g.ldy, g.ldy, m0, m1); break;
      case 2: panels_2xNT<2, kSub>(p0, p1, k_pad, g.x + t0, y + t0 * g.ldy, g.ldy, m0, m1); break;
      case 1: panels_2xNT<1, kSub>(p0, p1, k_pad, g.x + t0, y + t0 * g.ldy, g.ldy, m0, m1); break;
      default: break;
    }
  }
}

using RowsFn = void (*)(const GgmlRowsArgs&, const Q8Row*, float*);
template <class D> struct Table {
  static constexpr RowsFn fn[9] = {nullptr,        rows_nt<D, 1>, rows_nt<D, 2>, rows_nt<D, 3>, rows_nt<D, 4>,
                                   rows_nt<D, 5>, rows_nt<D, 6>, rows_nt<D, 7>, rows_nt<D, 8>};
};
constexpr RowsFn kQ4_0Fns[9] = {nullptr,       rows_q4_0<1>, rows_q4_0<2>, rows_q4_0<3>, rows_q4_0<4>,
                                rows_q4_0<5>, rows_q4_0<6>, rows_q4_0<7>, rows_q4_0<8>};
constexpr RowsFn kGenericFns[9] = {nullptr,          rows_generic<1>, rows_generic<2>, rows_generic<3>, rows_generic<4>,
                                   rows_generic<5>, rows_generic<6>, rows_generic<7>, rows_generic<8>};

const RowsFn* fns_for(const GgmlMatrix& w) {
  switch (w.type) {
    case io::kGgmlQ4_0:  // blocks in lanes where rows are whole units on 16-byte boundaries
      return w.cols % 256 == 0 && reinterpret_cast<uintptr_t>(w.row(0)) % 16 == 0 ? kQ4_0Fns : Table<Q4_0>::fn;
    case io::kGgmlQ4_1: return Table<Q4_1>::fn;
    case io::kGgmlQ5_0: return Table<Q5<false>>::fn;
    case io::kGgmlQ5_1: return Table<Q5<true>>::fn;
    case io::kGgmlQ8_0: return Table<Q8_0>::fn;
    case io::kGgmlIQ4_NL: return Table<IQ4_NL>::fn;
    case io::kGgmlIQ4_XS: return Table<IQ4_XS>::fn;
    case io::kGgmlQ2_K: return Table<Q2_K>::fn;
    case io::kGgmlQ3_K: return Table<Q3_K>::fn;
    case io::kGgmlQ4_K: return Table<QK<false>>::fn;
    case io::kGgmlQ5_K: return Table<QK<true>>::fn;
    case io::kGgmlQ6_K: return Table<Q6_K>::fn;
    default: return kGenericFns;
  }
}

using PrefillFn = void (*)(const GgmlRowsArgs&);
PrefillFn prefill_for(uint32_t type) {
  switch (type) {
    case io::kGgmlQ4_0: return rows_prefill<Q4_0>;
    case io::kGgmlQ4_1: return rows_prefill<Q4_1>;
    case io::kGgmlQ5_0: return rows_prefill<Q5<false>>;
    case io::kGgmlQ5_1: return rows_prefill<Q5<true>>;
    case io::kGgmlQ8_0: return rows_prefill<Q8_0>;
    case io::kGgmlIQ4_NL: return rows_prefill<IQ4_NL>;
    case io::kGgmlIQ4_XS: return rows_prefill<IQ4_XS>;
    case io::kGgmlQ2_K: return rows_prefill<Q2_K>;
    case io::kGgmlQ3_K: return rows_prefill<Q3_K>;
    case io::kGgmlQ4_K: return rows_prefill<QK<false>>;
    case io::kGgmlQ5_K: return rows_prefill<QK<true>>;
    case io::kGgmlQ6_K: return rows_prefill<Q6_K>;
    default: return rows_prefill<GenericDecoder>;
  }
}

// ---------------------------------------------------------------- activation quantizers
// The reference's arithmetic (ref.cpp) in vectors: the same products, rounded to nearest even by
// vcvtps2dq as std::nearbyint rounds, so the codes and scales are identical.

template <bool kMinSum>
void quantize_q8_0_avx512(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* d16, float* s16) {
  for (int64_t b0 = 0; b0 < k_pad; b0 += 32) {
    const __m512 x0 = _mm512_maskz_loadu_ps(first16(k - b0), x + b0), x1 = _mm512_maskz_loadu_ps(first16(k - b0 - 16), x + b0 + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float d = f16_to_f32_scalar(f32_to_f16_scalar(amax / 127.f)), id = amax > 0.f ? 127.f / amax : 0.f;
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b0), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b0 + 16), _mm512_cvtepi32_epi8(q1));
    const int32_t sum0 = _mm512_reduce_add_epi32(q0), sum1 = _mm512_reduce_add_epi32(q1);
    d16[b0 / 16] = d16[b0 / 16 + 1] = d;
    s16[b0 / 16] = d * float(sum0), s16[b0 / 16 + 1] = d * float(sum1);
    if (kMinSum) {
      s16[b0 / 16] = f16_to_f32_scalar(f32_to_f16_scalar(amax / 127.f * float(sum0 + sum1)));
      s16[b0 / 16 + 1] = 0.f;
    }
  }
}

void quantize_q8_k_avx512(const float* x, int64_t k, int64_t, int8_t* q, float* d16, float* s16) {
  for (int64_t b0 = 0; b0 < k; b0 += 256) {
    __m512 v[16], m = _mm512_setzero_ps();
    for (int i = 0; i < 16; ++i) v[i] = _mm512_loadu_ps(x + b0 + 16 * i), m = _mm512_max_ps(m, _mm512_abs_ps(v[i]));
    const float amax = _mm512_reduce_max_ps(m);
    float max = 0.f;  // the first value of largest magnitude, with its sign
    for (int i = 0; i < 16 && amax > 0.f; ++i)
      if (const __mmask16 e = _mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), _mm512_set1_ps(amax), _CMP_EQ_OQ)) {
        max = x[b0 + 16 * i + __builtin_ctz(e)];
        break;
      }
    const float iscale = amax > 0.f ? -127.f / max : 0.f, d = amax > 0.f ? 1.f / iscale : 0.f;
    for (int i = 0; i < 16; ++i) {
      const __m512i c = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_set1_ps(iscale), v[i])), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b0 + 16 * i), _mm512_cvtepi32_epi8(c));
      d16[b0 / 16 + i] = d, s16[b0 / 16 + i] = d * float(_mm512_reduce_add_epi32(c));
    }
  }
}

}  // namespace

const ActQuantizers kActQuantizersAvx512 = {quantize_q8_0_avx512<false>, quantize_q8_0_avx512<true>, quantize_q8_k_avx512};

void ggmlgemm_blk_i8_f32_x8__avx512vnni(const GgmlRowsArgs& g) {
  // From a few tokens on, decoding every row once into panels pays for itself. Measured (4096²,
  // one thread, ms, decode path / panels): q4_0 n = 4 0.85 / 1.14, 8 2.19 / 1.50; q4_K n = 8
  // 1.20 / 1.45, 16 2.57 / 2.15 — the 256-value types decode in registers with integer scales,
  // so panels pay later.
  const int64_t prefill_from = io::ggml_type_info(g.w->type)->block_values == 32 ? 6 : 12;
  if (g.n >= prefill_from) return prefill_for(g.w->type)(g);
  const RowsFn* fn = fns_for(*g.w);
  for (int64_t t0 = 0; t0 < g.n; t0 += 8) {
    const int nt = int(std::min<int64_t>(8, g.n - t0));
    fn[nt](g, g.x + t0, g.y + t0 * g.ldy);
  }
}

}  // namespace tz::kernels
