// AVX-512-BF16 GEMM in dot-product form: VDPBF16PS multiplies 32 bf16 pairs and accumulates
// into 16 f32 lanes; a 4 x 4 block of (x row, w row) pairs keeps 16 zmm accumulators. Masked loads
// handle any k (zero pairs add nothing). Also the small-n path of the AMX variant.
#include <immintrin.h>

#include <algorithm>

#include "kernels/gemm/gemm.h"

namespace tz::kernels {
namespace {

inline __mmask32 mask32(int64_t left) { return left >= 32 ? ~__mmask32(0) : (__mmask32(1) << left) - 1; }

template <int NB, int MB>
void block(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t k, float* y, int64_t ldy) {
  __m512 acc[NB][MB];
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p += 32) {
    const __mmask32 m = mask32(k - p);
    __m512bh wv[MB];
    for (int j = 0; j < MB; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j * ldw + p);
    for (int i = 0; i < NB; ++i) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * ldx + p);
      for (int j = 0; j < MB; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}

template <int NB>
void row_block(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t k, float* y,
               int64_t ldy, int64_t m0, int64_t m1) {
  int64_t j = m0;
  for (; j + 4 <= m1; j += 4) block<NB, 4>(x, ldx, w + j * ldw, ldw, k, y + j, ldy);
  switch (m1 - j) {
    case 3: block<NB, 3>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    case 2: block<NB, 2>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    case 1: block<NB, 1>(x, ldx, w + j * ldw, ldw, k, y + j, ldy); break;
    default: break;
  }
}

}  // namespace

void gemm_bf16_bf16_f32_4x4__avx512bf16(const GemmBf16Args& a) {
  gemm_parallel_m(a.m, 4, a.n, a.k, [&](int64_t m0, int64_t m1) {
    constexpr int64_t kSlab = 32;  // w rows kept in L2 while all x rows stream past
    for (int64_t s = m0; s < m1; s += kSlab) {
      const int64_t e = std::min(m1, s + kSlab);
      int64_t i = 0;
      for (; i + 4 <= a.n; i += 4) row_block<4>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
      for (; i < a.n; ++i) row_block<1>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
    }
  });
}

}  // namespace tz::kernels
