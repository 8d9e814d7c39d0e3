// The fused LoRA kernels written once over a vector type V (V::L float lanes); see lora.h.
#pragma once
#include <algorithm>

#include "kernels/lora/lora.h"

namespace tz::kernels::lora {

// NR rows (1..4) share every load of A; no lane computes a duplicate row.
template <class V, int NR, class W>
void shrink_rows(const Task& t, const W* a, const float* const* xr, int64_t in, float* h, int64_t r0) {
  constexpr int L = V::L;
  for (int64_t j = 0; j < t.rank; ++j) {
    const W* aj = a + j * in;
    V acc[NR];
    for (int q = 0; q < NR; ++q) acc[q] = V::zero();
    int64_t i = 0;
    for (; i + L <= in; i += L) {
      const V av = V::load(aj + i);
      for (int q = 0; q < NR; ++q) acc[q] = V::fma(av, V::load(xr[q] + i), acc[q]);
    }
    float tail[NR] = {};
    for (; i < in; ++i)
      for (int q = 0; q < NR; ++q) tail[q] += V::widen(aj[i]) * xr[q][i];
    for (int q = 0; q < NR; ++q) h[(r0 + q) * t.rank + j] = acc[q].sum() + tail[q];
  }
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

template <class V, class W>
void expand_w(const Task& t, const W* bt, const float* h, int64_t out, int64_t o0, int64_t o1, float* y) {
  constexpr int L = V::L;
  for (int64_t r = 0; r < t.nrows; ++r) {
    float* yr = y + int64_t(t.rows[r]) * out;
    const float* hr = h + r * t.rank;
    int64_t o = o0;
    for (; o + 2 * L <= o1; o += 2 * L) {
      V acc0 = V::zero(), acc1 = V::zero();
      for (int64_t j = 0; j < t.rank; ++j) {
        const V hj = V::set1(hr[j] * t.scale);
        acc0 = V::fma(hj, V::load(bt + j * out + o), acc0);
        acc1 = V::fma(hj, V::load(bt + j * out + o + L), acc1);
      }
      (V::load(yr + o) + acc0).store(yr + o);
      (V::load(yr + o + L) + acc1).store(yr + o + L);
    }
    for (; o < o1; ++o) {
      float s = 0;
      for (int64_t j = 0; j < t.rank; ++j) s += hr[j] * t.scale * V::widen(bt[j * out + o]);
      yr[o] += s;
    }
  }
}

template <class V>
void shrink(const Task& t, const float* x, int64_t in, float* h) {
  if (t.a16 != nullptr) shrink_w<V>(t, t.a16, x, in, h);
  else shrink_w<V>(t, t.a, x, in, h);
}
template <class V>
void expand(const Task& t, const float* h, int64_t out, int64_t o0, int64_t o1, float* y) {
  if (t.bt16 != nullptr) expand_w<V>(t, t.bt16, h, out, o0, o1, y);
  else expand_w<V>(t, t.bt, h, out, o0, o1, y);
}

inline float bf16_widen(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace tz::kernels::lora
