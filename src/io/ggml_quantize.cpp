// Round-to-nearest quantizers into ggml's block types (layouts: ggml_dequant.cpp, docs/formats.md),
// for writing GGUF files of any common type (`compress -o X.gguf --gguf-type`). Plain RTN with
// min/max scales — not llama-quantize's error-minimising search, so files are a little less
// accurate than llama.cpp's own; every block is what ggml's dequantizer reads.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"

namespace tz::io {
namespace {

constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16_scalar(v);
  std::memcpy(p, &h, 2);
}
float as_f16(float v) { return f16_to_f32_scalar(f32_to_f16_scalar(v)); }
int clampi(long v, int lo, int hi) { return int(std::clamp<long>(v, lo, hi)); }

// Codes of x·(1/d) + offset rounded into [0, qmax] (d == 0: all `offset`).
void rtn(const float* x, int n, float d, float offset, int qmax, uint8_t* q) {
  const float id = d != 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < n; ++i) q[i] = uint8_t(clampi(std::lround(x[i] * id + offset), 0, qmax));
}

// Nibbles: byte j holds codes j (low) and j + half (high).
void pack_nibbles(const uint8_t* q, int half, uint8_t* out) {
  for (int j = 0; j < half; ++j) out[j] = uint8_t((q[j] & 0x0f) | (q[j + half] << 4));
}

void q_q4_1(const float* x, uint8_t* b) {
  const auto [mn, mx] = std::minmax_element(x, x + 32);
  const float d = as_f16((*mx - *mn) / 15.f), m = as_f16(*mn);
  put_f16(b, d);
  put_f16(b + 2, m);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = uint8_t(d != 0.f ? clampi(std::lround((x[i] - m) / d), 0, 15) : 0);
  pack_nibbles(q, 16, b + 4);
}

template <bool kMin> void q_q5(const float* x, uint8_t* b) {
  uint8_t q[32];
  float d;
  if (kMin) {
    const auto [mn, mx] = std::minmax_element(x, x + 32);
    d = as_f16((*mx - *mn) / 31.f);
    const float m = as_f16(*mn);
    put_f16(b + 2, m);
    for (int i = 0; i < 32; ++i) q[i] = uint8_t(d != 0.f ? clampi(std::lround((x[i] - m) / d), 0, 31) : 0);
  } else {
    float amax = 0, max = 0;  // the value of largest magnitude maps to code 0 (−16)
    for (int i = 0; i < 32; ++i)
      if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
    d = as_f16(max / -16.f);
    rtn(x, 32, d, 16.f, 31, q);
  }
  put_f16(b, d);
  uint8_t* p = b + (kMin ? 4 : 2);
  uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= uint32_t(q[j] >> 4) << j;
  std::memcpy(p, &qh, 4);
  pack_nibbles(q, 16, p + 4);
}

// Per-sub-block (scale, min) with x ≈ scale·q − min, q in [0, qmax], min ≥ 0.
void scale_min(const float* x, int n, int qmax, float* scale, float* mn) {
  const auto [lo, hi] = std::minmax_element(x, x + n);
  const float m = std::min(0.f, *lo);
  *mn = -m;
  *scale = (*hi - m) / float(qmax);
}

// Q4_K / Q5_K: eight 32-value groups; group scales and mins quantized to 6 bits of d and dmin.
template <bool kFive> void q_qk(const float* x, uint8_t* b) {
  const int qmax = kFive ? 31 : 15;
  float sc[8], mn[8];
  for (int g = 0; g < 8; ++g) scale_min(x + 32 * g, 32, qmax, &sc[g], &mn[g]);
  const float d = as_f16(*std::max_element(sc, sc + 8) / 63.f), dmin = as_f16(*std::max_element(mn, mn + 8) / 63.f);
  put_f16(b, d);
  put_f16(b + 2, dmin);
  uint8_t ls[8], lm[8], q[256];
  for (int g = 0; g < 8; ++g) {
    ls[g] = uint8_t(d != 0.f ? clampi(std::lround(sc[g] / d), 0, 63) : 0);
    lm[g] = uint8_t(dmin != 0.f ? clampi(std::lround(mn[g] / dmin), 0, 63) : 0);
    const float dl = d * ls[g], ml = dmin * lm[g];
    for (int i = 0; i < 32; ++i) q[32 * g + i] = uint8_t(dl != 0.f ? clampi(std::lround((x[32 * g + i] + ml) / dl), 0, qmax) : 0);
  }
  uint8_t* s = b + 4;  // the packing scale_min_k4 reads back
  for (int j = 0; j < 4; ++j) {
    s[j] = uint8_t(ls[j] | ((ls[j + 4] >> 4) << 6));
    s[j + 4] = uint8_t(lm[j] | ((lm[j + 4] >> 4) << 6));
    s[j + 8] = uint8_t((ls[j + 4] & 0x0f) | ((lm[j + 4] & 0x0f) << 4));
  }
  uint8_t* qh = b + 16;
  uint8_t* ql = b + (kFive ? 48 : 16);
  if (kFive) std::memset(qh, 0, 32);
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 32; ++l) {
      const uint8_t a = q[64 * j + l], c = q[64 * j + 32 + l];
      ql[32 * j + l] = uint8_t((a & 0x0f) | ((c & 0x0f) << 4));
      if (kFive) qh[l] = uint8_t(qh[l] | ((a >> 4) << (2 * j)) | ((c >> 4) << (2 * j + 1)));
    }
}

// Q6_K: sixteen 16-value groups, int8 scales of d, codes q + 32 in [0, 63].
void q_q6_k(const float* x, uint8_t* b) {
  float sc[16];
  for (int g = 0; g < 16; ++g) {
    float amax = 0, max = 0;
    for (int i = 0; i < 16; ++i)
      if (std::fabs(x[16 * g + i]) > amax) amax = std::fabs(x[16 * g + i]), max = x[16 * g + i];
    sc[g] = max / -32.f;
  }
  float smax = 0;
  for (float s : sc) smax = std::max(smax, std::fabs(s));
  const float d = as_f16(smax / 127.f);
  int8_t* scales = reinterpret_cast<int8_t*>(b + 192);
  uint8_t q[256];
  for (int g = 0; g < 16; ++g) {
    scales[g] = int8_t(d != 0.f ? clampi(std::lround(sc[g] / d), -128, 127) : 0);
    rtn(x + 16 * g, 16, d * scales[g], 32.f, 63, q + 16 * g);
  }
  put_f16(b + 208, d);
  for (int h = 0; h < 2; ++h) {
    uint8_t* ql = b + 64 * h;
    uint8_t* qh = b + 128 + 32 * h;
    const uint8_t* c = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = uint8_t((c[l] & 0x0f) | ((c[l + 64] & 0x0f) << 4));
      ql[l + 32] = uint8_t((c[l + 32] & 0x0f) | ((c[l + 96] & 0x0f) << 4));
      qh[l] = uint8_t((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) | ((c[l + 96] >> 4) << 6));
    }
  }
}

// Q2_K: sixteen 16-value groups, 4-bit scales and mins of d and dmin, 2-bit codes.
void q_q2_k(const float* x, uint8_t* b) {
  float sc[16], mn[16];
  for (int g = 0; g < 16; ++g) scale_min(x + 16 * g, 16, 3, &sc[g], &mn[g]);
  const float d = as_f16(*std::max_element(sc, sc + 16) / 15.f), dmin = as_f16(*std::max_element(mn, mn + 16) / 15.f);
  uint8_t q[256];
  for (int g = 0; g < 16; ++g) {
    const int ls = d != 0.f ? clampi(std::lround(sc[g] / d), 0, 15) : 0, lm = dmin != 0.f ? clampi(std::lround(mn[g] / dmin), 0, 15) : 0;
    b[g] = uint8_t(ls | (lm << 4));
    const float dl = d * float(ls), ml = dmin * float(lm);
    for (int i = 0; i < 16; ++i) q[16 * g + i] = uint8_t(dl != 0.f ? clampi(std::lround((x[16 * g + i] + ml) / dl), 0, 3) : 0);
  }
  uint8_t* qs = b + 16;
  std::memset(qs, 0, 64);
  for (int i = 0; i < 256; ++i) {  // value i: byte 32·half + 16·part + l, bits 2·(i % 128 / 32)
    const int half = i / 128, r = i % 128, sh = r / 32, part = (r % 32) / 16, l = r % 16;
    qs[32 * half + 16 * part + l] = uint8_t(qs[32 * half + 16 * part + l] | (q[i] << (2 * sh)));
  }
  put_f16(b + 80, d);
  put_f16(b + 82, dmin);
}

// Q3_K: sixteen 16-value groups, signed 6-bit scales of d, 3-bit codes c with value d·sc·(c − 4):
// the group's value of largest magnitude maps to code 0 (−4), as q5_0 does.
void q_q3_k(const float* x, uint8_t* b) {
  float sc[16], smax = 0;
  for (int g = 0; g < 16; ++g) {
    float amax = 0, max = 0;
    for (int i = 0; i < 16; ++i)
      if (std::fabs(x[16 * g + i]) > amax) amax = std::fabs(x[16 * g + i]), max = x[16 * g + i];
    sc[g] = max / -4.f;
    smax = std::max(smax, std::fabs(sc[g]));
  }
  const float d = as_f16(smax / 31.f);
  uint8_t* hm = b;
  uint8_t* qs = b + 32;
  uint8_t* s = b + 96;
  std::memset(b, 0, 108);
  for (int g = 0; g < 16; ++g) {
    const int ls = d != 0.f ? clampi(std::lround(sc[g] / d), -32, 31) : 0, u = ls + 32;
    s[g % 8] = uint8_t(s[g % 8] | ((u & 0x0f) << (g < 8 ? 0 : 4)));  // low nibbles of 0..7, then their high nibbles
    s[8 + g % 4] = uint8_t(s[8 + g % 4] | ((u >> 4) << (2 * (g / 4))));
    uint8_t q[16];
    rtn(x + 16 * g, 16, d * float(ls), 4.f, 7, q);
    for (int l = 0; l < 16; ++l) {  // value v = 16g + l: half v / 128, shift 2·(v % 128 / 32), byte v % 32
      const int v = 16 * g + l, half = v / 128, j = (v % 128) / 32, k = v % 32;
      qs[32 * half + k] = uint8_t(qs[32 * half + k] | ((q[l] & 3) << (2 * j)));
      hm[k] = uint8_t(hm[k] | ((q[l] >> 2) << (4 * half + j)));
    }
  }
  put_f16(b + 108, d);
}

// Ternary types: trits round(x / mean|x|) in {−1, 0, 1} (BitNet b1.58's absmean rule), then d the
// least-squares scale of those trits (the mean |x| where the trit is not 0); stored + 1.
float ternary_trits(const float* x, uint8_t* t) {
  double sum = 0;
  for (int i = 0; i < 256; ++i) sum += std::fabs(x[i]);
  const double mean = sum / 256;
  double kept = 0;
  int nonzero = 0;
  for (int i = 0; i < 256; ++i) {
    const int q = mean > 0 ? clampi(std::lround(x[i] / mean), -1, 1) : 0;
    t[i] = uint8_t(q + 1);
    if (q != 0) kept += std::fabs(x[i]), ++nonzero;
  }
  return nonzero > 0 ? as_f16(float(kept / nonzero)) : 0.f;
}

// TQ1_0: five trits per byte as a base-3 fraction of 256 (the first trit most significant,
// rounded up so that ·3^n >> 8 reads trit n back): bytes 0..31 hold values 32n + m, bytes 32..47
// values 160 + 16n + m, qh[j] (four trits) values 240 + 4n + j.
void q_tq1_0(const float* x, uint8_t* b) {
  uint8_t t[256];
  const float d = ternary_trits(x, t);
  const auto pack = [](const uint8_t* trits, int count, int stride) {
    int q = 0;
    for (int n = 0; n < count; ++n) q = q * 3 + trits[n * stride];
    for (int n = count; n < 5; ++n) q *= 3;
    return uint8_t((q * 256 + 242) / 243);
  };
  for (int m = 0; m < 32; ++m) b[m] = pack(t + m, 5, 32);
  for (int m = 0; m < 16; ++m) b[32 + m] = pack(t + 160 + m, 5, 16);
  for (int j = 0; j < 4; ++j) b[48 + j] = pack(t + 240 + j, 4, 4);
  put_f16(b + 52, d);
}

// TQ2_0: 2-bit trits, four per byte: byte 32h + m holds values 128h + 32l + m in bits 2l.
void q_tq2_0(const float* x, uint8_t* b) {
  uint8_t t[256];
  const float d = ternary_trits(x, t);
  std::memset(b, 0, 64);
  for (int v = 0; v < 256; ++v) b[32 * (v / 128) + v % 32] = uint8_t(b[32 * (v / 128) + v % 32] | (t[v] << (2 * ((v % 128) / 32))));
  put_f16(b + 64, d);
}

uint8_t nearest_iq4(float v) {  // index of the level closest to v (levels ascending)
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(float(kIq4Levels[k]) - v) < std::fabs(float(kIq4Levels[best]) - v)) best = k;
  return uint8_t(best);
}

// The scale that maps the value of largest magnitude onto the extreme level of its sign.
float iq4_scale(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  return max >= 0 ? max / 113.f : max / -127.f;
}

void q_iq4_nl(const float* x, uint8_t* b) {
  const float d = as_f16(iq4_scale(x, 32));
  put_f16(b, d);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = nearest_iq4(d != 0.f ? x[i] / d : 0.f);
  pack_nibbles(q, 16, b + 2);
}

void q_iq4_xs(const float* x, uint8_t* b) {
  float s[8], smax = 0;
  for (int g = 0; g < 8; ++g) smax = std::max(smax, std::fabs(s[g] = iq4_scale(x + 32 * g, 32)));
  const float d = as_f16(smax / 31.f);
  put_f16(b, d);
  uint16_t sh = 0;
  std::memset(b + 4, 0, 4);
  for (int g = 0; g < 8; ++g) {
    const int ls = d != 0.f ? clampi(std::lround(s[g] / d), -32, 31) + 32 : 32;
    b[4 + g / 2] = uint8_t(b[4 + g / 2] | ((ls & 0x0f) << (4 * (g % 2))));
    sh = uint16_t(sh | ((ls >> 4) << (2 * g)));
    const float dl = d * float(ls - 32);
    uint8_t q[32];
    for (int i = 0; i < 32; ++i) q[i] = nearest_iq4(dl != 0.f ? x[32 * g + i] / dl : 0.f);
    pack_nibbles(q, 16, b + 8 + 16 * g);
  }
  std::memcpy(b + 2, &sh, 2);
}

void q_q4_0(const float* x, uint8_t* b) { quantize_q4_0(x, b, 32); }
void q_q8_0(const float* x, uint8_t* b) { quantize_q8_0(x, b, 32); }

struct BlockQuant {
  uint32_t type;
  void (*fn)(const float*, uint8_t*);
};
constexpr BlockQuant kQuant[] = {
    {kGgmlQ4_0, q_q4_0},     {kGgmlQ4_1, q_q4_1},       {kGgmlQ5_0, q_q5<false>}, {kGgmlQ5_1, q_q5<true>},
    {kGgmlQ8_0, q_q8_0},     {kGgmlQ2_K, q_q2_k},       {kGgmlQ4_K, q_qk<false>}, {kGgmlQ5_K, q_qk<true>},
    {kGgmlQ6_K, q_q6_k},     {kGgmlIQ4_NL, q_iq4_nl},   {kGgmlIQ4_XS, q_iq4_xs},  {kGgmlQ3_K, q_q3_k},
    {kGgmlTQ1_0, q_tq1_0},   {kGgmlTQ2_0, q_tq2_0},
};

}  // namespace

bool ggml_quantize_supported(uint32_t type) {
  for (const auto& q : kQuant)
    if (q.type == type) return true;
  return false;
}

void quantize_ggml(uint32_t type, const float* x, uint8_t* blocks, size_t n) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  for (const auto& q : kQuant)
    if (q.type == type) {
      require(n % ti->block_values == 0, std::string("ggml ") + ti->name + ": " + std::to_string(n) + " values are not whole blocks of " +
                                             std::to_string(ti->block_values));
      for (size_t blk = 0; blk < n / ti->block_values; ++blk) q.fn(x + blk * ti->block_values, blocks + blk * ti->block_bytes);
      return;
    }
  throw Error(std::string("ggml type ") + (ti ? ti->name : std::to_string(type)) + " has no quantizer in tensorzip");
}

}  // namespace tz::io

namespace tz::io {

int ggml_code_block_bits(uint32_t type) {
  switch (type) {
    case kGgmlQ4_0: case kGgmlQ4_1: return 4;
    case kGgmlQ5_0: case kGgmlQ5_1: return 5;
    case kGgmlQ8_0: return 8;
    default: return 0;
  }
}

void encode_ggml_codes(uint32_t type, const uint8_t* q, float d, float m, uint8_t* b) {
  const int bits = ggml_code_block_bits(type);
  require(bits > 0, std::string("encode_ggml_codes: ") + (ggml_type_info(type) ? ggml_type_info(type)->name : "an unknown type") +
                        " does not store plain codes");
  for (int i = 0; i < 32; ++i) require(q[i] < (1u << bits), "encode_ggml_codes: code out of range");
  put_f16(b, d);
  const bool with_min = type == kGgmlQ4_1 || type == kGgmlQ5_1;
  if (with_min) put_f16(b + 2, m);
  uint8_t* p = b + (with_min ? 4 : 2);
  if (type == kGgmlQ8_0) {  // int8 q − 128
    for (int i = 0; i < 32; ++i) p[i] = uint8_t(int(q[i]) - 128);
    return;
  }
  if (bits == 5) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= uint32_t(q[j] >> 4) << j;
    std::memcpy(p, &qh, 4);
    p += 4;
  }
  pack_nibbles(q, 16, p);
}

}  // namespace tz::io
