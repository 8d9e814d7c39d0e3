// Scalar reference of the llama.cpp-block GEMM: decode each row, then exact integer dot products
// per 16-value sub-block, scaled in f32 in sub-block order.
#include <vector>

#include "kernels/ggml/decode.h"
#include "kernels/ggml/ggml_gemm.h"
#include "tensorzip/io/gguf.h"
#include "kernels/ggml/decoders.inc"

namespace tz::kernels {

DecodeRowFn ggml_decoder__ref(uint32_t type) { TZ_GGML_DECODERS }

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
