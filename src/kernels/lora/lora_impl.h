// The fused LoRA kernels written once over a vector type V (V::L float lanes); see lora.h.
#pragma once
#include <algorithm>

#include "kernels/lora/lora.h"

namespace tz::kernels::lora {

template <class V>
void shrink(const Task& t, const float* x, int64_t in, float* h) {
  constexpr int L = V::L;
  for (int64_t r0 = 0; r0 < t.nrows; r0 += 4) {  // four rows share each load of A
    const int nr = int(std::min<int64_t>(4, t.nrows - r0));
    const float* xr[4];
    for (int q = 0; q < 4; ++q) xr[q] = x + int64_t(t.rows[r0 + std::min(q, nr - 1)]) * in;
    for (int64_t j = 0; j < t.rank; ++j) {
      const float* aj = t.a + j * in;
      V acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
      int64_t i = 0;
      for (; i + L <= in; i += L) {
        const V av = V::load(aj + i);
        for (int q = 0; q < 4; ++q) acc[q] = V::fma(av, V::load(xr[q] + i), acc[q]);
      }
      float tail[4] = {0, 0, 0, 0};
      for (; i < in; ++i)
        for (int q = 0; q < 4; ++q) tail[q] += aj[i] * xr[q][i];
      for (int q = 0; q < nr; ++q) h[(r0 + q) * t.rank + j] = acc[q].sum() + tail[q];
    }
  }
}

template <class V>
void expand(const Task& t, const float* h, int64_t out, int64_t o0, int64_t o1, float* y) {
  constexpr int L = V::L;
  for (int64_t r = 0; r < t.nrows; ++r) {
    float* yr = y + int64_t(t.rows[r]) * out;
    const float* hr = h + r * t.rank;
    int64_t o = o0;
    for (; o + 2 * L <= o1; o += 2 * L) {
      V acc0 = V::zero(), acc1 = V::zero();
      for (int64_t j = 0; j < t.rank; ++j) {
        const V hj = V::set1(hr[j] * t.scale);
        acc0 = V::fma(hj, V::load(t.bt + j * out + o), acc0);
        acc1 = V::fma(hj, V::load(t.bt + j * out + o + L), acc1);
      }
      (V::load(yr + o) + acc0).store(yr + o);
      (V::load(yr + o + L) + acc1).store(yr + o + L);
    }
    for (; o < o1; ++o) {
      float s = 0;
      for (int64_t j = 0; j < t.rank; ++j) s += hr[j] * t.scale * t.bt[j * out + o];
      yr[o] += s;
    }
  }
}

}  // namespace tz::kernels::lora
