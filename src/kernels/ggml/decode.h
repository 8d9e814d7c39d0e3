// Decoders of llama.cpp's weight blocks into one form every type shares: unsigned 8-bit codes u
// and, per 16-value sub-block s, a scale a[s] and offset b[s] with w = a[s]·u + b[s]. The integer
// dot products then read u as the unsigned operand of u8×s8 multiply-adds (VNNI vpdpbusd) against
// int8 activations; b[s] meets the activations' per-sub-block sums.
//   q4_0 q4_1 q5_0 q5_1: u = the code             q8_0: u = q + 128, b = −128·d
//   iq4_nl iq4_xs:       u = level + 128 (the codebook's int8 level, so the non-uniform levels are
//                        exact integers; b = −128·scale)
//   q2_K q3_K q4_K q5_K q6_K: u = the code (q3_K: low 2 bits + 4·high bit, b = −4·a; q6_K: b = −32·a),
//                        a and b from the two-level scales (6-bit or 4-bit sub-scales × f16 d / dmin)
//   tq1_0 tq2_0:         u = the trit 0..2, b = −d
// Header-only: each ISA's translation unit compiles the loops with its own vector width.
#pragma once
#include <cstdint>
#include <cstring>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "tensorzip/convert.h"

// Internal linkage (unnamed namespace): each ISA's copy stays its own; an inline function of one
// name compiled with different -m flags in two units would let the linker keep either.
namespace tz::kernels::ggml {
namespace {

inline float ld_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
#ifdef __F16C__
  return _cvtsh_ss(h);  // one instruction where the unit may use F16C
#else
  return f16_to_f32_scalar(h);
#endif
}

constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ---- 32-value blocks: u[32], a[2], b[2]
inline void set2(float* a, float* b, float av, float bv) { a[0] = a[1] = av, b[0] = b[1] = bv; }

inline void dec_q4_0(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int j = 0; j < 16; ++j) u[j] = blk[2 + j] & 0x0f, u[j + 16] = blk[2 + j] >> 4;
  const float d = ld_f16(blk);
  set2(a, b, d, -8.f * d);
}
inline void dec_q4_1(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int j = 0; j < 16; ++j) u[j] = blk[4 + j] & 0x0f, u[j + 16] = blk[4 + j] >> 4;
  set2(a, b, ld_f16(blk), ld_f16(blk + 2));
}
template <bool kMin> inline void dec_q5(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const uint8_t* p = blk + (kMin ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  for (int j = 0; j < 16; ++j) {
    u[j] = uint8_t((p[4 + j] & 0x0f) | (((qh >> j) & 1u) << 4));
    u[j + 16] = uint8_t((p[4 + j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
  }
  const float d = ld_f16(blk);
  set2(a, b, d, kMin ? ld_f16(blk + 2) : -16.f * d);
}
inline void dec_q8_0(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int j = 0; j < 32; ++j) u[j] = uint8_t(blk[2 + j] ^ 0x80);
  const float d = ld_f16(blk);
  set2(a, b, d, -128.f * d);
}
inline void dec_iq4_nl(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int j = 0; j < 16; ++j) {
    u[j] = uint8_t(kIq4Levels[blk[2 + j] & 0x0f] + 128);
    u[j + 16] = uint8_t(kIq4Levels[blk[2 + j] >> 4] + 128);
  }
  const float d = ld_f16(blk);
  set2(a, b, d, -128.f * d);
}

// ---- 256-value super-blocks: u[256], a[16], b[16]

// {u8 scales[16] (low nibble scale, high nibble min), u8 qs[64], f16 d, f16 dmin}
inline void dec_q2_k(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const float d = ld_f16(blk + 80), dmin = ld_f16(blk + 82);
  for (int s = 0; s < 16; ++s) a[s] = d * float(blk[s] & 0x0f), b[s] = -dmin * float(blk[s] >> 4);
  const uint8_t* q = blk + 16;
  for (int half = 0; half < 2; ++half, q += 32, u += 128)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) u[32 * j + l] = (q[l] >> (2 * j)) & 3;
}

// {u8 hmask[32], u8 qs[64], u8 scales[12] (16 6-bit scales, offset 32), f16 d}
inline void dec_q3_k(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const uint8_t* s = blk + 96;
  const float d = ld_f16(blk + 108);
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    a[i] = d * float((lo | (hi << 4)) - 32);
    b[i] = -4.f * a[i];
  }
  const uint8_t* hm = blk;
  const uint8_t* q = blk + 32;
  for (int half = 0; half < 2; ++half, q += 32, u += 128)
    for (int j = 0; j < 4; ++j) {
      const int bit = 4 * half + j;
      for (int l = 0; l < 32; ++l) u[32 * j + l] = uint8_t(((q[l] >> (2 * j)) & 3) | (((hm[l] >> bit) & 1) << 2));
    }
}

// Q4_K {f16 d, f16 dmin, u8 scales[12], u8 qs[128]} / Q5_K {…, u8 qh[32], u8 qs[128]}
template <bool kFive> inline void dec_qk(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const float d = ld_f16(blk), dmin = ld_f16(blk + 2);
  const uint8_t* sc = blk + 4;
  for (int g = 0; g < 8; ++g) {
    int s, m;
    if (g < 4) {
      s = sc[g] & 63, m = sc[g + 4] & 63;
    } else {
      s = (sc[g + 4] & 0x0f) | ((sc[g - 4] >> 6) << 4);
      m = (sc[g + 4] >> 4) | ((sc[g] >> 6) << 4);
    }
    a[2 * g] = a[2 * g + 1] = d * float(s);
    b[2 * g] = b[2 * g + 1] = -dmin * float(m);
  }
  const uint8_t* qh = blk + 16;
  const uint8_t* ql = blk + (kFive ? 48 : 16);
  for (int j = 0; j < 4; ++j, ql += 32, u += 64)
    for (int l = 0; l < 32; ++l) {
      uint8_t lo = ql[l] & 0x0f, hi = ql[l] >> 4;
      if (kFive) {
        lo = uint8_t(lo | (((qh[l] >> (2 * j)) & 1) << 4));
        hi = uint8_t(hi | (((qh[l] >> (2 * j + 1)) & 1) << 4));
      }
      u[l] = lo, u[32 + l] = hi;
    }
}

// {u8 ql[128], u8 qh[64], i8 scales[16], f16 d}: 6-bit codes, offset 32
inline void dec_q6_k(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const float d = ld_f16(blk + 208);
  const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
  for (int s = 0; s < 16; ++s) a[s] = d * float(sc[s]), b[s] = -32.f * a[s];
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + 128;
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, u += 128)
    for (int l = 0; l < 32; ++l) {
      u[l] = uint8_t((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
      u[l + 32] = uint8_t((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
      u[l + 64] = uint8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      u[l + 96] = uint8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
}

// {f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]}: eight 32-value sub-blocks, 6-bit scales offset 32
inline void dec_iq4_xs(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  const float d = ld_f16(blk);
  uint16_t sh;
  std::memcpy(&sh, blk + 2, 2);
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
    a[2 * ib] = a[2 * ib + 1] = d * float(ls - 32);
    b[2 * ib] = b[2 * ib + 1] = -128.f * a[2 * ib];
  }
  const uint8_t* qs = blk + 8;
  for (int ib = 0; ib < 8; ++ib, qs += 16, u += 32)
    for (int j = 0; j < 16; ++j) {
      u[j] = uint8_t(kIq4Levels[qs[j] & 0x0f] + 128);
      u[j + 16] = uint8_t(kIq4Levels[qs[j] >> 4] + 128);
    }
}

// Ternary digit n of a byte holding five base-3 digits scaled to 0..255 (TQ1_0's packing).
inline uint8_t trit(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};
  return uint8_t((int(uint8_t(byte * kPow3[n])) * 3) >> 8);
}
inline void set16(float* a, float* b, float av, float bv) {
  for (int s = 0; s < 16; ++s) a[s] = av, b[s] = bv;
}
inline void dec_tq1_0(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) *u++ = trit(blk[m], n);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) *u++ = trit(blk[32 + m], n);
  for (int n = 0; n < 4; ++n)
    for (int j = 0; j < 4; ++j) *u++ = trit(blk[48 + j], n);
  const float d = ld_f16(blk + 52);
  set16(a, b, d, -d);
}
inline void dec_tq2_0(const uint8_t* blk, uint8_t* u, float* a, float* b) {
  for (int j = 0; j < 64; j += 32)
    for (int l = 0; l < 4; ++l)
      for (int m = 0; m < 32; ++m) *u++ = (blk[j + m] >> (2 * l)) & 3;
  const float d = ld_f16(blk + 64);
  set16(a, b, d, -d);
}

using DecodeBlockFn = void (*)(const uint8_t* blk, uint8_t* u, float* a, float* b);

// Decodes a row of `cols` values (whole blocks) into u[cols] and a/b[cols / 16].
template <DecodeBlockFn kDec, int kValues, int kBytes>
void decode_row(const uint8_t* row, int64_t cols, uint8_t* u, float* a, float* b) {
  for (int64_t i = 0; i < cols / kValues; ++i)
    kDec(row + i * kBytes, u + i * kValues, a + i * (kValues / 16), b + i * (kValues / 16));
}

}  // namespace
}  // namespace tz::kernels::ggml
