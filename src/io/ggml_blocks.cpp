// ggml q4_0 / q8_0 blocks: reference conversions (see ggml_blocks.h for the layout).
#include "tensorzip/io/ggml_blocks.h"

#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"

namespace tz::io {

void dequantize_q8_0(const uint8_t* b, float* out, size_t n) {
  for (size_t blk = 0; blk < n / kGgmlBlock; ++blk, b += kQ8_0BlockBytes) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const float d = f16_to_f32_scalar(dh);
    for (size_t i = 0; i < kGgmlBlock; ++i) out[blk * kGgmlBlock + i] = d * float(int8_t(b[2 + i]));
  }
}

void dequantize_q4_0(const uint8_t* b, float* out, size_t n) {
  for (size_t blk = 0; blk < n / kGgmlBlock; ++blk, b += kQ4_0BlockBytes) {
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const float d = f16_to_f32_scalar(dh);
    for (size_t i = 0; i < 16; ++i) {
      out[blk * kGgmlBlock + i] = d * float(int(b[2 + i] & 0x0f) - 8);
      out[blk * kGgmlBlock + i + 16] = d * float(int(b[2 + i] >> 4) - 8);
    }
  }
}

void quantize_q8_0(const float* x, uint8_t* b, size_t n) {
  for (size_t blk = 0; blk < n / kGgmlBlock; ++blk, b += kQ8_0BlockBytes) {
    const float* v = x + blk * kGgmlBlock;
    float amax = 0.f;
    for (size_t i = 0; i < kGgmlBlock; ++i) amax = std::fmax(amax, std::fabs(v[i]));
    const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
    const uint16_t dh = f32_to_f16_scalar(d);
    std::memcpy(b, &dh, 2);
    for (size_t i = 0; i < kGgmlBlock; ++i) b[2 + i] = uint8_t(int8_t(std::nearbyint(v[i] * id)));
  }
}

void quantize_q4_0(const float* x, uint8_t* b, size_t n) {
  for (size_t blk = 0; blk < n / kGgmlBlock; ++blk, b += kQ4_0BlockBytes) {
    const float* v = x + blk * kGgmlBlock;
    float amax = 0.f, max = 0.f;  // signed value of largest magnitude, as llama.cpp does
    for (size_t i = 0; i < kGgmlBlock; ++i)
      if (std::fabs(v[i]) > amax) amax = std::fabs(v[i]), max = v[i];
    const float d = max / -8.f, id = d != 0.f ? 1.f / d : 0.f;
    const uint16_t dh = f32_to_f16_scalar(d);
    std::memcpy(b, &dh, 2);
    for (size_t i = 0; i < 16; ++i) {
      const auto q = [&](float f) { int t = int(f * id + 8.5f); return uint8_t(t > 15 ? 15 : (t < 0 ? 0 : t)); };
      b[2 + i] = uint8_t(q(v[i]) | (q(v[i + 16]) << 4));
    }
  }
}

}  // namespace tz::io
