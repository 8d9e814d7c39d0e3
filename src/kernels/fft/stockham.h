// Radix-4 Stockham FFT (autosort: no bit reversal pass), written once over a lane type V so the
// same code runs one row at a time (V = float) or 16 rows at once in the lanes of a zmm register
// (V = Vec16): every butterfly is then plain vertical arithmetic, no shuffles. Follows the
// decimation-in-frequency Stockham formulation (OTFFT's fft0): a stage reads x with stride s and
// writes y in sorted order; the next stage has stride 4s.
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

// One row group: x, y hold n complex values with stride s (x[q + s*p]); the result ends in x when
// eo is false, in y when true. inv: inverse direction (conjugate twiddles, no scaling).
template <class V>
void stockham(int64_t n, int64_t s, bool eo, Cx<V>* x, Cx<V>* y, const Twiddles& tw, int stage, bool inv) {
  if (n == 1) {
    if (eo)
      for (int64_t q = 0; q < s; ++q) y[q] = x[q];
    return;
  }
  if (n == 2) {
    Cx<V>* z = eo ? y : x;
    for (int64_t q = 0; q < s; ++q) {
      const Cx<V> a = x[q], b = x[q + s];
      z[q] = {a.re + b.re, a.im + b.im};
      z[q + s] = {a.re - b.re, a.im - b.im};
    }
    return;
  }
  const int64_t n1 = n / 4, n2 = n / 2, n3 = n1 * 3;
  const float* w = tw.stage[size_t(stage)].data();
  const float sg = inv ? -1.f : 1.f;
  for (int64_t p = 0; p < n1; ++p) {
    const float w1r = w[6 * p], w1i = sg * w[6 * p + 1], w2r = w[6 * p + 2], w2i = sg * w[6 * p + 3];
    const float w3r = w[6 * p + 4], w3i = sg * w[6 * p + 5];
    for (int64_t q = 0; q < s; ++q) {
      const Cx<V> a = x[q + s * (p + 0)], b = x[q + s * (p + n1)];
      const Cx<V> c = x[q + s * (p + n2)], d = x[q + s * (p + n3)];
      const Cx<V> apc{a.re + c.re, a.im + c.im}, amc{a.re - c.re, a.im - c.im};
      const Cx<V> bpd{b.re + d.re, b.im + d.im};
      // j·(b − d) forward, −j·(b − d) inverse, with j = sqrt(−1)
      const V dr = b.re - d.re, di = b.im - d.im;
      const Cx<V> jbmd = inv ? Cx<V>{di, V::zero() - dr} : Cx<V>{V::zero() - di, dr};
      y[q + s * (4 * p + 0)] = {apc.re + bpd.re, apc.im + bpd.im};
      y[q + s * (4 * p + 1)] = cmul(Cx<V>{amc.re - jbmd.re, amc.im - jbmd.im}, w1r, w1i);
      y[q + s * (4 * p + 2)] = cmul(Cx<V>{apc.re - bpd.re, apc.im - bpd.im}, w2r, w2i);
      y[q + s * (4 * p + 3)] = cmul(Cx<V>{amc.re + jbmd.re, amc.im + jbmd.im}, w3r, w3i);
    }
  }
  stockham<V>(n / 4, 4 * s, !eo, y, x, tw, stage + 1, inv);
}

}  // namespace tz::kernels::fft
