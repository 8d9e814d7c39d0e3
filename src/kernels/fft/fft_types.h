// Types shared by the FFT kernels: complex values over a lane type V (float for one row, Vec8 /
// Vec16 for 8 / 16 rows in the lanes of a SIMD register, so butterflies are vertical arithmetic
// with no shuffles) and the radix-4 twiddle tables.
#pragma once
#include <cstdint>
#include <vector>

namespace tz::kernels::fft {

template <class V> struct Cx { V re, im; };

// Twiddles of every radix-4 stage: for stage length n, w^p, w^2p, w^3p with w = e^{-2πi/n},
// p < n/4, as (re, im) pairs.
struct Twiddles {
  std::vector<std::vector<float>> stage;  // stage[i] for n = M / 4^i
  static Twiddles make(int64_t m);
};

template <class V>
inline Cx<V> cmul(Cx<V> a, float wr, float wi) {
  const V r = V::set1(wr), i = V::set1(wi);
  return {V::fms(a.re, r, a.im * i), V::fma(a.re, i, a.im * r)};
}

}  // namespace tz::kernels::fft
