// In-place, depth-first radix-4 FFT: forward decimation in frequency (natural order in,
// digit-reversed order out) and its exact inverse, decimation in time (digit-reversed in, natural
// out, unnormalized). Depth-first recursion keeps each sub-transform in cache once it fits (a
// breadth-first Stockham pass streamed the whole 16-row workspace once per stage: 2-3x slower at
// N = 16K-64K), and the
// digit-reversed spectrum is never reordered: the spectral step reads bin k at perm[k], as
// FlashFFTConv consumes its permuted spectrum.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/fft/fft_types.h"

namespace tz::kernels::fft {

// perm[k] = where the forward transform leaves bin k.
inline std::vector<int32_t> digit_reversal(int64_t m) {
  std::vector<int32_t> perm(static_cast<size_t>(m));
  // Block of size n at offset base holds bins base_k + stride·j for j < n.
  struct Rec {
    static void go(std::vector<int32_t>& p, int64_t n, int64_t base, int64_t first, int64_t stride) {
      if (n == 1) {
        p[size_t(first)] = int32_t(base);
        return;
      }
      const int64_t r = n == 2 ? 2 : 4, q = n / r;
      // Sub-block s (offset base + s·q) holds the bins first + stride·(r·j + s).
      for (int64_t s = 0; s < r; ++s) go(p, q, base + s * q, first + stride * s, stride * r);
    }
  };
  Rec::go(perm, m, 0, 0, 1);
  return perm;
}

// One radix-4 DIF butterfly in place: a, b, c, d = x[p + i·q]; w = (w^p, w^2p, w^3p) as re/im pairs.
template <class V>
inline void dif_bfly(Cx<V>& a, Cx<V>& b, Cx<V>& c, Cx<V>& d, const float* w) {
  const Cx<V> apc{a.re + c.re, a.im + c.im}, amc{a.re - c.re, a.im - c.im};
  const Cx<V> bpd{b.re + d.re, b.im + d.im};
  const V dr = b.re - d.re, di = b.im - d.im;
  const Cx<V> jbmd{V::zero() - di, dr};  // i·(b − d)
  a = {apc.re + bpd.re, apc.im + bpd.im};
  b = cmul(Cx<V>{amc.re - jbmd.re, amc.im - jbmd.im}, w[0], w[1]);
  c = cmul(Cx<V>{apc.re - bpd.re, apc.im - bpd.im}, w[2], w[3]);
  d = cmul(Cx<V>{amc.re + jbmd.re, amc.im + jbmd.im}, w[4], w[5]);
}

// Its inverse (DIT, conjugate twiddles, unnormalized).
template <class V>
inline void dit_bfly(Cx<V>& a, Cx<V>& b, Cx<V>& c, Cx<V>& d, const float* w) {
  const Cx<V> z0 = a, z1 = cmul(b, w[0], -w[1]), z2 = cmul(c, w[2], -w[3]), z3 = cmul(d, w[4], -w[5]);
  const Cx<V> s02{z0.re + z2.re, z0.im + z2.im}, d02{z0.re - z2.re, z0.im - z2.im};
  const Cx<V> s13{z1.re + z3.re, z1.im + z3.im};
  const V er = z1.re - z3.re, ei = z1.im - z3.im;
  const Cx<V> i13{V::zero() - ei, er};  // i·(z1 − z3)
  a = {s02.re + s13.re, s02.im + s13.im};  // z0 + z1 + z2 + z3
  b = {d02.re + i13.re, d02.im + i13.im};  // z0 + i z1 − z2 − i z3
  c = {s02.re - s13.re, s02.im - s13.im};  // z0 − z1 + z2 − z3
  d = {d02.re - i13.re, d02.im - i13.im};  // z0 − i z1 − z2 + i z3
}

// The radix-4 butterflies of one DIF level over p in [p0, p1) of a block of n (>= 4) values.
template <class V>
void dif4_butterflies(Cx<V>* x, int64_t n, const Twiddles& tw, int stage, int64_t p0, int64_t p1) {
  const int64_t q = n / 4;
  const float* w = tw.stage[size_t(stage)].data();
  for (int64_t p = p0; p < p1; ++p) dif_bfly<V>(x[p], x[p + q], x[p + 2 * q], x[p + 3 * q], w + 6 * p);
}

// Two radix-4 DIF levels fused, in registers: the 16 values e[i] = x[p + i·n/16] (p < n/16) of a
// block of n go through level `stage` (4 butterflies over i = t + 4r) then level stage + 1
// (4 butterflies over i = 4r + s) — the same operations as two dif4_butterflies passes, in the same
// order per value.
template <class V>
inline void dif16_regs(Cx<V>* e, const Twiddles& tw, int stage, int64_t n, int64_t p) {
  const int64_t q16 = n / 16;
  const float* w0 = tw.stage[size_t(stage)].data();
  const float* w1 = tw.stage[size_t(stage) + 1].data();
  for (int t = 0; t < 4; ++t) dif_bfly<V>(e[t], e[t + 4], e[t + 8], e[t + 12], w0 + 6 * (p + t * q16));
  for (int r = 0; r < 4; ++r) dif_bfly<V>(e[4 * r], e[4 * r + 1], e[4 * r + 2], e[4 * r + 3], w1 + 6 * p);
}

// Its inverse: level stage + 1, then level `stage`, inverse butterflies.
template <class V>
inline void dit16_regs(Cx<V>* e, const Twiddles& tw, int stage, int64_t n, int64_t p) {
  const int64_t q16 = n / 16;
  const float* w0 = tw.stage[size_t(stage)].data();
  const float* w1 = tw.stage[size_t(stage) + 1].data();
  for (int r = 0; r < 4; ++r) dit_bfly<V>(e[4 * r], e[4 * r + 1], e[4 * r + 2], e[4 * r + 3], w1 + 6 * p);
  for (int t = 0; t < 4; ++t) dit_bfly<V>(e[t], e[t + 4], e[t + 8], e[t + 12], w0 + 6 * (p + t * q16));
}

// The two levels as one pass over a block in memory, for p in [p0, p1) ⊂ [0, n/16) (for blocks
// that do not fit in cache: one pass over memory instead of two).
template <class V>
void dif16_butterflies(Cx<V>* x, int64_t n, const Twiddles& tw, int64_t p0, int64_t p1, int stage) {
  const int64_t q16 = n / 16;
  for (int64_t p = p0; p < p1; ++p) {
    Cx<V> e[16];
    for (int i = 0; i < 16; ++i) e[i] = x[p + i * q16];
    dif16_regs<V>(e, tw, stage, n, p);
    for (int i = 0; i < 16; ++i) x[p + i * q16] = e[i];
  }
}

// Blocks of 8K points or more take two levels per pass over memory (dif16/dit16_butterflies)
// instead of one: with 16 rows in the lanes that is 1 MB, half a core's L2, where the passes start
// to stream (measured: fusing from 1 MB instead of 2 MB made 1M-point rows 9 % faster; below, the
// fused pass's register spills cost more than it saves). A count, not bytes, so that every lane type
// takes the same path at the same size and one test covers them all.
constexpr int64_t kFuseMinPoints = 8192;
inline bool fuse_two_levels(int64_t n) { return n >= kFuseMinPoints; }

template <class V>
void dif4(Cx<V>* x, int64_t n, const Twiddles& tw, int stage) {
  if (n == 1) return;
  if (n == 2) {
    const Cx<V> a = x[0], b = x[1];
    x[0] = {a.re + b.re, a.im + b.im};
    x[1] = {a.re - b.re, a.im - b.im};
    return;
  }
  if (fuse_two_levels(n)) {
    const int64_t q16 = n / 16;
    dif16_butterflies<V>(x, n, tw, 0, q16, stage);
    for (int s = 0; s < 16; ++s) dif4<V>(x + s * q16, q16, tw, stage + 2);
    return;
  }
  const int64_t q = n / 4;
  dif4_butterflies<V>(x, n, tw, stage, 0, q);
  for (int s = 0; s < 4; ++s) dif4<V>(x + s * q, q, tw, stage + 1);
}

// The inverse radix-4 butterflies of one DIT level over p in [p0, p1) of a block of n (>= 4).
template <class V>
void dit4_butterflies(Cx<V>* x, int64_t n, const Twiddles& tw, int stage, int64_t p0, int64_t p1) {
  const int64_t q = n / 4;
  const float* w = tw.stage[size_t(stage)].data();
  for (int64_t p = p0; p < p1; ++p) dit_bfly<V>(x[p], x[p + q], x[p + 2 * q], x[p + 3 * q], w + 6 * p);
}

// The inverse of dif16_butterflies.
template <class V>
void dit16_butterflies(Cx<V>* x, int64_t n, const Twiddles& tw, int64_t p0, int64_t p1, int stage) {
  const int64_t q16 = n / 16;
  for (int64_t p = p0; p < p1; ++p) {
    Cx<V> e[16];
    for (int i = 0; i < 16; ++i) e[i] = x[p + i * q16];
    dit16_regs<V>(e, tw, stage, n, p);
    for (int i = 0; i < 16; ++i) x[p + i * q16] = e[i];
  }
}

template <class V>
void dit4_inv(Cx<V>* x, int64_t n, const Twiddles& tw, int stage) {
  if (n == 1) return;
  if (n == 2) {
    const Cx<V> a = x[0], b = x[1];
    x[0] = {a.re + b.re, a.im + b.im};
    x[1] = {a.re - b.re, a.im - b.im};
    return;
  }
  if (fuse_two_levels(n)) {
    const int64_t q16 = n / 16;
    for (int s = 0; s < 16; ++s) dit4_inv<V>(x + s * q16, q16, tw, stage + 2);
    dit16_butterflies<V>(x, n, tw, 0, q16, stage);
    return;
  }
  const int64_t q = n / 4;
  for (int s = 0; s < 4; ++s) dit4_inv<V>(x + s * q, q, tw, stage + 1);
  dit4_butterflies<V>(x, n, tw, stage, 0, q);
}

}  // namespace tz::kernels::fft
