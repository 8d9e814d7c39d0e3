// Scalar reference of the llama.cpp-block GEMM: decode each row, then exact integer dot products
// per 16-value sub-block, scaled in f32 in sub-block order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ggml/decode.h"
#include "kernels/ggml/ggml_gemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/io/gguf.h"
#include "kernels/ggml/decoders.inc"

namespace tz::kernels {

DecodeRowFn ggml_decoder__ref(uint32_t type) { TZ_GGML_DECODERS }

namespace {

// kMinSum: q8_1 (for q4_1 / q5_1, whose offset term meets Σ activations): the 32-block's sum
// d·Σq rounded to f16 as llama.cpp stores it, carried by the first 16-value half (both halves
// share one offset b, so b·s16[0] + b·s16[1] = b·s).
template <bool kMinSum>
void quantize_row_q8_0(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* d16, float* s16) {
  for (int64_t b0 = 0; b0 < k_pad; b0 += 32) {
    const int64_t len = std::clamp<int64_t>(k - b0, 0, 32);
    float amax = 0.f;
    for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(x[b0 + i]));
    const float d = f16_to_f32_scalar(f32_to_f16_scalar(amax / 127.f)), id = amax > 0.f ? 127.f / amax : 0.f;
    int32_t sum[2] = {0, 0};
    for (int64_t i = 0; i < 32; ++i) {
      q[b0 + i] = int8_t(i < len ? int(std::nearbyint(x[b0 + i] * id)) : 0);
      sum[i / 16] += q[b0 + i];
    }
    for (int h = 0; h < 2; ++h) d16[b0 / 16 + h] = d, s16[b0 / 16 + h] = d * float(sum[h]);
    if (kMinSum) {
      s16[b0 / 16] = f16_to_f32_scalar(f32_to_f16_scalar(amax / 127.f * float(sum[0] + sum[1])));
      s16[b0 / 16 + 1] = 0.f;
    }
  }
}

void quantize_row_q8_k(const float* x, int64_t k, int64_t, int8_t* q, float* d16, float* s16) {
  for (int64_t b0 = 0; b0 < k; b0 += 256) {
    float amax = 0.f, max = 0.f;
    for (int64_t i = 0; i < 256; ++i)
      if (std::fabs(x[b0 + i]) > amax) amax = std::fabs(x[b0 + i]), max = x[b0 + i];
    const float iscale = amax > 0.f ? -127.f / max : 0.f, d = amax > 0.f ? 1.f / iscale : 0.f;
    for (int64_t s = 0; s < 16; ++s) {
      int32_t sum = 0;
      for (int64_t i = 16 * s; i < 16 * s + 16; ++i) {
        q[b0 + i] = int8_t(std::min(127, int(std::nearbyint(iscale * x[b0 + i]))));
        sum += q[b0 + i];
      }
      d16[b0 / 16 + s] = d, s16[b0 / 16 + s] = d * float(sum);
    }
  }
}

}  // namespace

const ActQuantizers kActQuantizersRef = {quantize_row_q8_0<false>, quantize_row_q8_0<true>, quantize_row_q8_k};

void ggmlgemm_blk_i8_f32__ref(const GgmlRowsArgs& g) {
  const GgmlMatrix& w = *g.w;
  const int64_t k_pad = ggml_k_pad(w.cols), subs = k_pad / 16;
  std::vector<uint8_t> u(size_t(k_pad), 0);
  std::vector<float> a(size_t(subs), 0.f), b(size_t(subs), 0.f);
  const DecodeRowFn decode = ggml_decoder__ref(w.type);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    decode(w.row(r), w.cols, u.data(), a.data(), b.data());
    for (int64_t t = 0; t < g.n; ++t) {
      const Q8Row& x = g.x[t];
      float acc = 0.f;
      for (int64_t s = 0; s < subs; ++s) {
        int32_t dot = 0;
        for (int i = 0; i < 16; ++i) dot += int32_t(u[size_t(16 * s + i)]) * int32_t(x.q[16 * s + i]);
        acc += a[size_t(s)] * x.d16[s] * float(dot) + b[size_t(s)] * x.s16[s];
      }
      g.y[t * g.ldy + r] = acc;
    }
  }
}

}  // namespace tz::kernels
