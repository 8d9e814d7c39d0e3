// AVX2/FMA GEMM in dot-product form: a 4 (x rows) x 3 (w rows) block keeps 12 ymm accumulators
// along k; both operands are read along their contiguous k axis, so no packing is needed. Used
// when the ISA cap is avx2 (OpenBLAS's AVX-512 kernels are then off limits).
#include <immintrin.h>

#include <algorithm>

#include "kernels/gemm/gemm.h"

namespace tz::kernels {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i tail_mask8(int64_t left) {
  alignas(32) static const int32_t lut[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + 8 - left));
}

struct F32Loader {
  const float* p;
  __m256 load(int64_t off) const { return _mm256_loadu_ps(p + off); }
  __m256 load_tail(int64_t off, __m256i mask) const { return _mm256_maskload_ps(p + off, mask); }
};
struct Bf16Loader {
  const uint16_t* p;
  static __m256 widen(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
  __m256 load(int64_t off) const { return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + off))); }
  __m256 load_tail(int64_t off, __m256i mask) const {
    alignas(16) uint16_t buf[8] = {};
    const int64_t left = _mm256_movemask_ps(_mm256_castsi256_ps(mask));
    for (int i = 0; i < 8; ++i) if (left & (1 << i)) buf[i] = p[off + i];
    return widen(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
};

template <class L, int NB, int MB, class T>
void block(const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t k, float* y, int64_t ldy) {
  __m256 acc[NB][MB];
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    __m256 wv[MB];
    for (int j = 0; j < MB; ++j) wv[j] = L{w + j * ldw}.load(p);
    for (int i = 0; i < NB; ++i) {
      const __m256 xv = L{x + i * ldx}.load(p);
      for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (p < k) {
    const __m256i mask = tail_mask8(k - p);
    __m256 wv[MB];
    for (int j = 0; j < MB; ++j) wv[j] = L{w + j * ldw}.load_tail(p, mask);
    for (int i = 0; i < NB; ++i) {
      const __m256 xv = L{x + i * ldx}.load_tail(p, mask);
      for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < NB; ++i)
    for (int j = 0; j < MB; ++j) y[i * ldy + j] = hsum(acc[i][j]);
}

template <class L, int NB, class T>
void row_block(const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t k, float* y, int64_t ldy,
               int64_t m0, int64_t m1) {
  int64_t j = m0;
  for (; j + 3 <= m1; j += 3) block<L, NB, 3>(x, ldx, w + j * ldw, ldw, k, y + j, ldy);
  if (m1 - j == 2) block<L, NB, 2>(x, ldx, w + j * ldw, ldw, k, y + j, ldy);
  if (m1 - j == 1) block<L, NB, 1>(x, ldx, w + j * ldw, ldw, k, y + j, ldy);
}

template <class L, class Args>
void run(const Args& a) {
  gemm_parallel_m(a.m, 3, a.n, a.k, [&](int64_t m0, int64_t m1) {
    // Walk W in slabs of rows so they stay in L2 while every x row passes over them.
    constexpr int64_t kSlab = 48;
    for (int64_t s = m0; s < m1; s += kSlab) {
      const int64_t e = std::min(m1, s + kSlab);
      int64_t i = 0;
      for (; i + 4 <= a.n; i += 4) row_block<L, 4>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
      for (; i < a.n; ++i) row_block<L, 1>(a.x + i * a.ldx, a.ldx, a.w, a.ldw, a.k, a.y + i * a.ldy, a.ldy, s, e);
    }
  });
}

}  // namespace

void gemm_f32_f32_f32_4x3__avx2(const GemmF32Args& a) { run<F32Loader>(a); }
void gemm_bf16_bf16_f32_4x3__avx2(const GemmBf16Args& a) { run<Bf16Loader>(a); }

}  // namespace tz::kernels
