// The fused LoRA kernels written once over a vector type V (V::L float lanes); see lora.h.
#pragma once
#include <algorithm>

#include "kernels/lora/lora.h"

namespace tz::kernels::lora {

// NR rows (1..4) x NJ rank rows of A (4 or 1) per pass over `in`: every load of x feeds NJ FMAs
// and every load of A feeds NR (register-blocked like a GEMM micro-kernel); no lane computes a
// duplicate row.
template <class V, int NR, int NJ, class W>
void shrink_block(const Task& t, const W* a, const float* const* xr, int64_t in, float* h, int64_t r0, int64_t j0) {
  constexpr int L = V::L;
  V acc[NR][NJ];
  for (int q = 0; q < NR; ++q)
    for (int jj = 0; jj < NJ; ++jj) acc[q][jj] = V::zero();
  int64_t i = 0;
  for (; i + L <= in; i += L) {
    V xv[NR];
    for (int q = 0; q < NR; ++q) xv[q] = V::load(xr[q] + i);
    for (int jj = 0; jj < NJ; ++jj) {
      const V av = V::load(a + (j0 + jj) * in + i);
      for (int q = 0; q < NR; ++q) acc[q][jj] = V::fma(av, xv[q], acc[q][jj]);
    }
  }
  for (int q = 0; q < NR; ++q)
    for (int jj = 0; jj < NJ; ++jj) {
      float tail = 0;
      for (int64_t k = i; k < in; ++k) tail += V::widen(a[(j0 + jj) * in + k]) * xr[q][k];
      h[(r0 + q) * t.rank + j0 + jj] = acc[q][jj].sum() + tail;
    }
}

template <class V, int NR, class W>
void shrink_rows(const Task& t, const W* a, const float* const* xr, int64_t in, float* h, int64_t r0) {
  int64_t j = 0;
  for (; j + 4 <= t.rank; j += 4) shrink_block<V, NR, 4>(t, a, xr, in, h, r0, j);
  for (; j < t.rank; ++j) shrink_block<V, NR, 1>(t, a, xr, in, h, r0, j);
}

template <class V, class W>
void shrink_w(const Task& t, const W* a, const float* x, int64_t in, float* h) {
  for (int64_t r0 = 0; r0 < t.nrows; r0 += 4) {
    const int nr = int(std::min<int64_t>(4, t.nrows - r0));
    const float* xr[4];
    for (int q = 0; q < nr; ++q) xr[q] = x + int64_t(t.rows[r0 + q]) * in;
    switch (nr) {
      case 4: shrink_rows<V, 4>(t, a, xr, in, h, r0); break;
      case 3: shrink_rows<V, 3>(t, a, xr, in, h, r0); break;
      case 2: shrink_rows<V, 2>(t, a, xr, in, h, r0); break;
      default: shrink_rows<V, 1>(t, a, xr, in, h, r0); break;
    }
  }
}

// NR rows (1..4) at a time: every load of Bᵀ feeds NR rows' FMAs.
template <class V, int NR, class W>
void expand_rows(const Task& t, const W* bt, const float* h, int64_t ldh, int64_t out, int64_t o0, int64_t o1, float* y,
                 int64_t ldy, int64_t r0) {
  constexpr int L = V::L;
  float* yr[NR];
  const float* hr[NR];
  for (int q = 0; q < NR; ++q) yr[q] = y + int64_t(t.rows[r0 + q]) * ldy, hr[q] = h + (r0 + q) * ldh;
  int64_t o = o0;
  for (; o + 2 * L <= o1; o += 2 * L) {
    V acc[NR][2];
    for (int q = 0; q < NR; ++q) acc[q][0] = acc[q][1] = V::zero();
    for (int64_t j = 0; j < t.rank; ++j) {
      const V b0 = V::load(bt + j * out + o), b1 = V::load(bt + j * out + o + L);
      for (int q = 0; q < NR; ++q) {
        const V hj = V::set1(hr[q][j] * t.scale);
        acc[q][0] = V::fma(hj, b0, acc[q][0]);
        acc[q][1] = V::fma(hj, b1, acc[q][1]);
      }
    }
    for (int q = 0; q < NR; ++q) {
      (V::load(yr[q] + o) + acc[q][0]).store(yr[q] + o);
      (V::load(yr[q] + o + L) + acc[q][1]).store(yr[q] + o + L);
    }
  }
  for (; o < o1; ++o)
    for (int q = 0; q < NR; ++q) {
      float sum = 0;
      for (int64_t j = 0; j < t.rank; ++j) sum += hr[q][j] * t.scale * V::widen(bt[j * out + o]);
      yr[q][o] += sum;
    }
}

template <class V, class W>
void expand_w(const Task& t, const W* bt, const float* h, int64_t ldh, int64_t out, int64_t o0, int64_t o1, float* y,
              int64_t ldy) {
  for (int64_t r0 = 0; r0 < t.nrows; r0 += 4) {
    switch (int(std::min<int64_t>(4, t.nrows - r0))) {
      case 4: expand_rows<V, 4>(t, bt, h, ldh, out, o0, o1, y, ldy, r0); break;
      case 3: expand_rows<V, 3>(t, bt, h, ldh, out, o0, o1, y, ldy, r0); break;
      case 2: expand_rows<V, 2>(t, bt, h, ldh, out, o0, o1, y, ldy, r0); break;
      default: expand_rows<V, 1>(t, bt, h, ldh, out, o0, o1, y, ldy, r0); break;
    }
  }
}

template <class V>
void shrink(const Task& t, const float* x, int64_t in, float* h) {
  if (t.a16 != nullptr) shrink_w<V>(t, t.a16, x, in, h);
  else shrink_w<V>(t, t.a, x, in, h);
}
template <class V>
void expand(const Task& t, const float* h, int64_t ldh, int64_t out, int64_t o0, int64_t o1, float* y, int64_t ldy) {
  if (t.bt16 != nullptr) expand_w<V>(t, t.bt16, h, ldh, out, o0, o1, y, ldy);
  else expand_w<V>(t, t.bt, h, ldh, out, o0, o1, y, ldy);
}

inline float bf16_widen(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace tz::kernels::lora
