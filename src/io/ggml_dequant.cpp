// Reference dequantizers for the ggml block types llama.cpp files carry weights in (layouts in
// ggml_blocks.h). Written from the block definitions; each is checked bit-exactly against gguf-py's
// dequantization of llama-quantize output (tests/io/ggml_types_test.cpp).
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"

namespace tz::io {
namespace {

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32_scalar(h);
}

// The 16 non-uniform levels shared by IQ4_NL and IQ4_XS.
constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ---- 32-value blocks
void deq_q4_1(const uint8_t* b, float* y) {  // {f16 d, f16 m, u8 qs[16]}: x = d·q + m
  const float d = f16(b), m = f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(b[4 + j] & 0x0f) + m;
    y[j + 16] = d * float(b[4 + j] >> 4) + m;
  }
}

// {f16 d, [f16 m], u8 qh[4], u8 qs[16]}: 5-bit codes, the fifth bit of value j in bit j of qh.
template <bool kMin> void deq_q5(const uint8_t* b, float* y) {
  const float d = f16(b), m = kMin ? f16(b + 2) : 0.f;
  const uint8_t* p = b + (kMin ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const uint8_t* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0f) | int(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
    if (kMin) {
      y[j] = d * float(lo) + m;
      y[j + 16] = d * float(hi) + m;
    } else {
      y[j] = d * float(lo - 16);
      y[j + 16] = d * float(hi - 16);
    }
  }
}

void deq_iq4_nl(const uint8_t* b, float* y) {  // {f16 d, u8 qs[16]}: x = d·level[nibble]
  const float d = f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIq4Levels[b[2 + j] & 0x0f]);
    y[j + 16] = d * float(kIq4Levels[b[2 + j] >> 4]);
  }
}

// ---- 256-value super-blocks (K-quants)

// Q4_K / Q5_K: eight 6-bit (scale, min) pairs packed in 12 bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *mn = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// {u8 scales[16] (low nibble scale, high nibble min), u8 qs[64], f16 d, f16 dmin}
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = f16(b + 80), dmin = f16(b + 82);
  int is = 0;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part) {
        const uint8_t sc = scales[is++];
        const float dl = d * float(sc & 0x0f), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * part] >> shift) & 3) - ml;
      }
}

// {u8 hmask[32], u8 qs[64], u8 scales[12] (16 6-bit scales, offset 32), f16 d}
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const uint8_t* s = b + 96;
  const float d = f16(b + 108);
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) {
    // Low 4 bits: the low nibbles of bytes 0..7, then their high nibbles; high 2 bits: crumb i / 4
    // of byte 8 + i % 4.
    const int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    scales[i] = int8_t((lo | (hi << 4)) - 32);
  }
  int is = 0;
  uint8_t m = 1;
  for (int half = 0; half < 2; ++half, q += 32)
    for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1))
      for (int part = 0; part < 2; ++part) {
        const float dl = d * float(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          const int k = l + 16 * part;
          *y++ = dl * float(int((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
        }
      }
}

// Q4_K {f16 d, f16 dmin, u8 scales[12], u8 qs[128]} and Q5_K {…, u8 qh[32] before qs}: eight
// 32-value groups, each d·sc·q − dmin·m; Q5_K's fifth bit of group g in bit g of qh. Decodes the
// 256 codes and each group's multiplier d·sc and subtrahend dmin·m.
template <bool kFive> void qk_groups(const uint8_t* b, uint8_t* codes, float* mul, float* sub) {
  const float d = f16(b), dmin = f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + (kFive ? 48 : 16);
  for (int j = 0; j < 4; ++j, ql += 32)
    for (int half = 0; half < 2; ++half) {
      const int g = 2 * j + half;
      uint8_t sc, mn;
      scale_min_k4(g, scales, &sc, &mn);
      mul[g] = d * float(sc);
      sub[g] = dmin * float(mn);
      const uint8_t hbit = uint8_t(1u << g);
      for (int l = 0; l < 32; ++l)
        codes[32 * g + l] = uint8_t((half ? ql[l] >> 4 : ql[l] & 0x0f) + (kFive && (qh[l] & hbit) ? 16 : 0));
    }
}

template <bool kFive> void deq_qk(const uint8_t* b, float* y) {
  uint8_t codes[256];
  float mul[8], sub[8];
  qk_groups<kFive>(b, codes, mul, sub);
  for (int i = 0; i < 256; ++i) y[i] = mul[i / 32] * float(codes[i]) - sub[i / 32];
}

// {u8 ql[128], u8 qh[64], i8 scales[16], f16 d}: 6-bit codes, offset 32
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16(b + 208);
  for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
}

// {f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]}: eight 32-value sub-blocks, 6-bit scales offset 32
void deq_iq4_xs(const uint8_t* b, float* y) {
  const float d = f16(b);
  uint16_t sh;
  std::memcpy(&sh, b + 2, 2);
  const uint8_t* sl = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib, y += 32, qs += 16) {
    const int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
    const float dl = d * float(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * float(kIq4Levels[qs[j] & 0x0f]);
      y[j + 16] = dl * float(kIq4Levels[qs[j] >> 4]);
    }
  }
}

// Ternary digit n of a byte holding five base-3 digits scaled to 0..255 (TQ1_0's packing):
// multiplying by 3^n (mod 256) brings digit n to the top, and ·3 >> 8 reads it.
int trit(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};
  const uint8_t q = uint8_t(byte * kPow3[n]);
  return (int(q) * 3) >> 8;
}

// {u8 qs[48], u8 qh[4], f16 d}: 240 values 5 per byte, 16 values 4 per byte
void deq_tq1_0(const uint8_t* b, float* y) {
  const uint8_t* qs = b;
  const uint8_t* qh = b + 48;
  const float d = f16(b + 52);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) *y++ = float(trit(qs[m], n) - 1) * d;
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) *y++ = float(trit(qs[32 + m], n) - 1) * d;
  for (int n = 0; n < 4; ++n)
    for (int j = 0; j < 4; ++j) *y++ = float(trit(qh[j], n) - 1) * d;
}

// {u8 qs[64], f16 d}: 2-bit codes {0,1,2} = {-1,0,+1}, four per byte, 32-byte groups
void deq_tq2_0(const uint8_t* b, float* y) {
  const float d = f16(b + 64);
  for (int j = 0; j < 64; j += 32)
    for (int l = 0; l < 4; ++l)
      for (int m = 0; m < 32; ++m) *y++ = float(int((b[j + m] >> (2 * l)) & 3) - 1) * d;
}

void deq_q8_0(const uint8_t* b, float* y) { dequantize_q8_0(b, y, 32); }
void deq_q4_0(const uint8_t* b, float* y) { dequantize_q4_0(b, y, 32); }

struct BlockDequant {
  uint32_t type;
  void (*fn)(const uint8_t*, float*);
};
constexpr BlockDequant kDequant[] = {
    {kGgmlQ4_0, deq_q4_0},   {kGgmlQ4_1, deq_q4_1},   {kGgmlQ5_0, deq_q5<false>}, {kGgmlQ5_1, deq_q5<true>},
    {kGgmlQ8_0, deq_q8_0},   {kGgmlQ2_K, deq_q2_k},   {kGgmlQ3_K, deq_q3_k},      {kGgmlQ4_K, deq_qk<false>},
    {kGgmlQ5_K, deq_qk<true>},   {kGgmlQ6_K, deq_q6_k},   {kGgmlIQ4_NL, deq_iq4_nl},  {kGgmlIQ4_XS, deq_iq4_xs},
    {kGgmlTQ1_0, deq_tq1_0}, {kGgmlTQ2_0, deq_tq2_0},
};

}  // namespace

bool ggml_dequantize_supported(uint32_t type) {
  if (type == kGgmlF32 || type == kGgmlF16 || type == kGgmlBF16) return true;
  for (const auto& d : kDequant)
    if (d.type == type) return true;
  return false;
}

void dequantize_ggml(uint32_t type, const uint8_t* data, float* out, size_t n) {
  if (type == kGgmlF32) {
    std::memcpy(out, data, n * 4);
    return;
  }
  if (type == kGgmlF16 || type == kGgmlBF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      out[i] = type == kGgmlF16 ? f16_to_f32_scalar(h) : bf16_to_f32_scalar(h);
    }
    return;
  }
  const GgmlTypeInfo* ti = ggml_type_info(type);
  require(ti != nullptr, "ggml type " + std::to_string(type) + " is unknown");
  for (const auto& d : kDequant)
    if (d.type == type) {
      require(n % ti->block_values == 0, std::string("ggml ") + ti->name + ": " + std::to_string(n) +
                                             " values are not whole blocks of " + std::to_string(ti->block_values));
      for (size_t blk = 0; blk < n / ti->block_values; ++blk) d.fn(data + blk * ti->block_bytes, out + blk * ti->block_values);
      return;
    }
  throw Error(std::string("ggml type ") + ti->name + " has no dequantizer in tensorzip");
}

}  // namespace tz::io
