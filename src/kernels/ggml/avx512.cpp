// AVX-512 VNNI kernel of the llama.cpp-block GEMM: each row decoded once into u8 codes (decode.h,
// vectorized by the compiler at this unit's width), then for up to 8 tokens at a time, per 256
// values: four vpdpbusd (u8 codes × s8 activations → 16 int32 lanes of 4 products), each lane
// scaled by its 16-value sub-block's a·d16 and accumulated in f32; the offsets b·s16 in one FMA.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/ggml/decode.h"
#include "kernels/ggml/ggml_gemm.h"
#include "tensorzip/io/gguf.h"
#include "kernels/ggml/decoders.inc"

namespace tz::kernels {

DecodeRowFn ggml_decoder__avx512(uint32_t type) { TZ_GGML_DECODERS }

namespace {

// y[t] for NT tokens of one decoded row.
template <int NT>
void dot_tokens(const uint8_t* u, const float* a, const float* b, int64_t units, const Q8Row* x, float* out) {
  // Lane l of piece c (values 64c + 4l .. +3) belongs to sub-block 4c + l/4.
  const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i four = _mm512_set1_epi32(4);
  const __m512i idx1 = _mm512_add_epi32(idx0, four), idx2 = _mm512_add_epi32(idx1, four), idx3 = _mm512_add_epi32(idx2, four);
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t un = 0; un < units; ++un) {
    const __m512 av = _mm512_loadu_ps(a + 16 * un), bv = _mm512_loadu_ps(b + 16 * un);
    const uint8_t* uu = u + 256 * un;
    const __m512i u0 = _mm512_loadu_si512(uu), u1 = _mm512_loadu_si512(uu + 64), u2 = _mm512_loadu_si512(uu + 128),
                  u3 = _mm512_loadu_si512(uu + 192);
    for (int t = 0; t < NT; ++t) {
      const int8_t* q = x[t].q + 256 * un;
      const __m512 f = _mm512_mul_ps(av, _mm512_loadu_ps(x[t].d16 + 16 * un));
      __m512 s = _mm512_fmadd_ps(bv, _mm512_loadu_ps(x[t].s16 + 16 * un), acc[t]);
      const __m512i z = _mm512_setzero_si512();
      const __m512i p0 = _mm512_dpbusd_epi32(z, u0, _mm512_loadu_si512(q));
      const __m512i p1 = _mm512_dpbusd_epi32(z, u1, _mm512_loadu_si512(q + 64));
      const __m512i p2 = _mm512_dpbusd_epi32(z, u2, _mm512_loadu_si512(q + 128));
      const __m512i p3 = _mm512_dpbusd_epi32(z, u3, _mm512_loadu_si512(q + 192));
      s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx0, f), s);
      s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(idx1, f), s);
      s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p2), _mm512_permutexvar_ps(idx2, f), s);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p3), _mm512_permutexvar_ps(idx3, f), s);
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

using DotFn = void (*)(const uint8_t*, const float*, const float*, int64_t, const Q8Row*, float*);
constexpr DotFn kDot[9] = {nullptr,          dot_tokens<1>, dot_tokens<2>, dot_tokens<3>, dot_tokens<4>,
                           dot_tokens<5>, dot_tokens<6>, dot_tokens<7>, dot_tokens<8>};

}  // namespace

void ggml_rows__avx512vnni(const GgmlRowsArgs& g) {
  const GgmlMatrix& w = *g.w;
  const int64_t k_pad = ggml_k_pad(w.cols), units = k_pad / 256;
  thread_local std::vector<uint8_t> ub;
  thread_local std::vector<float> ab, bb;
  if (int64_t(ub.size()) < k_pad) ub.resize(size_t(k_pad)), ab.resize(size_t(k_pad / 16)), bb.resize(size_t(k_pad / 16));
  // Past cols: zero codes, scales and offsets (the activations there are zero too).
  std::memset(ub.data() + w.cols, 0, size_t(k_pad - w.cols));
  std::fill(ab.begin() + w.cols / 16, ab.begin() + k_pad / 16, 0.f);
  std::fill(bb.begin() + w.cols / 16, bb.begin() + k_pad / 16, 0.f);
  const DecodeRowFn decode = ggml_decoder__avx512(w.type);
  float out[8];
  for (int64_t r = g.r0; r < g.r1; ++r) {
    decode(w.row(r), w.cols, ub.data(), ab.data(), bb.data());
    for (int64_t t0 = 0; t0 < g.n; t0 += 8) {
      const int nt = int(std::min<int64_t>(8, g.n - t0));
      kDot[nt](ub.data(), ab.data(), bb.data(), units, g.x + t0, out);
      for (int t = 0; t < nt; ++t) g.y[(t0 + t) * g.ldy + r] = out[t];
    }
  }
}

}  // namespace tz::kernels
