// The fused per-row-group convolution, written once over a lane type V (see stockham.h):
// load (gate) -> real-input packing -> forward FFT -> spectral product with the cached filter
// spectrum (real-FFT split and merge fused in) -> inverse FFT -> store (gate). A group is V::L rows
// of the same batch index and consecutive h; all of it stays in the thread's workspace.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/fft/stockham.h"
#include "tensorzip/fftconv.h"

namespace tz::kernels::fft {

// Everything the kernels need from a plan, in one place.
struct PlanCore {
  int64_t n = 0;      // sequence length
  int64_t h = 0;      // channels
  int64_t m = 0;      // complex FFT size: n (causal, real length 2n) or n/2 (circular, real length n)
  ConvMode mode = ConvMode::Causal;
  int lanes = 1;      // rows per group of the kernel the plan was built for
  Twiddles tw;        // of the size-m complex FFT
  std::vector<float> wl;    // e^{-2πi k / (2m)}, k = 0 .. m/2, as (re, im)
  // Filter spectra, scaled by 1/m: per group of `lanes` channels, for k = 0 .. m:
  // [group][k][re lanes][im lanes].
  std::vector<float> spec;
  std::vector<uint8_t> skip;  // per kFreqMaskBlock bins: 1 = masked (spectrum zero, product skipped)
  // With fewer channels than lanes, groups take consecutive rows of the flattened [B*H] batch, so
  // no lane idles; lane l of group g then uses channel (g*lanes + l) % h, which repeats every
  // `patterns` groups: spec holds one filter block per pattern instead of per channel group.
  bool flat_rows = false;
  int64_t patterns = 0;
  const float* group_spec(int64_t g) const { return spec.data() + size_t(g) * size_t(m + 1) * 2 * size_t(lanes); }
};

struct RowPtrs {
  const float* u[16];
  const float* w[16];  // gating on the input (nullptr: none)
  const float* v[16];  // gating on the output (nullptr: none)
  float* y[16];
  int rows;            // valid lanes
};

template <class V>
inline Cx<V> cmulv(Cx<V> a, Cx<V> b) {
  return {V::fms(a.re, b.re, a.im * b.im), V::fma(a.re, b.im, a.im * b.re)};
}
template <class V> inline Cx<V> conj(Cx<V> a) { return {a.re, V::zero() - a.im}; }

// z, t: workspace of pc.m complex vectors each.
template <class V>
void conv_group(const PlanCore& pc, int64_t group, const RowPtrs& io, Cx<V>* z, Cx<V>* t) {
  const int64_t n = pc.n, m = pc.m;
  // 1. Load: the real sequence x (u ⊙ w, zero-padded to 2n when causal) packed as z[j] = x[2j] + i·x[2j+1].
  //    V::load_block reads V::B consecutive samples of every row and transposes them to lanes
  //    (V::B = lanes, or 2 for the one-lane type: samples go in pairs).
  V xs[V::B];
  for (int64_t t0 = 0; t0 < n; t0 += V::B) {
    const int cnt = int(std::min<int64_t>(V::B, n - t0));
    V::load_block(io.u, io.w, io.rows, t0, cnt, xs);
    for (int i = 0; i < cnt; i += 2) z[(t0 + i) / 2] = {xs[i], xs[i + 1]};
  }
  for (int64_t j = n / 2; j < m; ++j) z[j] = {V::zero(), V::zero()};

  // 2. Forward FFT of size m (result back in z).
  stockham<V>(m, 1, false, z, t, pc.tw, 0, false);

  // 3. Spectral product. Bins k and m-k are processed together: split Z into the spectrum X of
  //    the real sequence, multiply by the filter K, merge back into Z' for a size-m inverse.
  const float* ks = pc.group_spec(group);
  const auto K = [&](int64_t k) { return Cx<V>{V::load(ks + (2 * k) * V::L), V::load(ks + (2 * k + 1) * V::L)}; };
  const auto masked = [&](int64_t k) { return !pc.skip.empty() && pc.skip[size_t(k / kFreqMaskBlock)]; };
  const V half = V::set1(0.5f);
  {
    // k = 0 pairs with bin m: X0 = Re Z0 + Im Z0, Xm = Re Z0 − Im Z0.
    const Cx<V> z0 = z[0];
    const Cx<V> x0{z0.re + z0.im, V::zero()}, xm{z0.re - z0.im, V::zero()};
    const Cx<V> y0 = masked(0) ? Cx<V>{V::zero(), V::zero()} : cmulv(x0, K(0));
    const Cx<V> ym = masked(m) ? Cx<V>{V::zero(), V::zero()} : cmulv(xm, K(m));
    const Cx<V> ye{(y0.re + ym.re) * half, (y0.im - ym.im) * half};   // (Y0 + conj Ym)/2
    const Cx<V> yo{(y0.re - ym.re) * half, (y0.im + ym.im) * half};   // (Y0 − conj Ym)/2
    z[0] = {ye.re - yo.im, ye.im + yo.re};                             // Ye + i·Yo
  }
  for (int64_t k = 1; k < m / 2; ++k) {
    const int64_t mk = m - k;
    const Cx<V> zk = z[k], zm = z[mk];
    const float wr = pc.wl[size_t(2 * k)], wi = pc.wl[size_t(2 * k + 1)];
    if (masked(k) && masked(mk)) {
      z[k] = z[mk] = {V::zero(), V::zero()};
      continue;
    }
    const Cx<V> xe{(zk.re + zm.re) * half, (zk.im - zm.im) * half};    // (Zk + conj Zm)/2
    const Cx<V> xo{(zk.im + zm.im) * half, (zm.re - zk.re) * half};    // −i (Zk − conj Zm)/2
    const Cx<V> wxo = cmul(xo, wr, wi);
    const Cx<V> xk{xe.re + wxo.re, xe.im + wxo.im};                   // Xk = Xe + W^k Xo
    const Cx<V> xmk = conj(Cx<V>{xe.re - wxo.re, xe.im - wxo.im});    // Xm = conj(Xe − W^k Xo)
    const Cx<V> yk = masked(k) ? Cx<V>{V::zero(), V::zero()} : cmulv(xk, K(k));
    const Cx<V> ym = masked(mk) ? Cx<V>{V::zero(), V::zero()} : cmulv(xmk, K(mk));
    const Cx<V> ye{(yk.re + ym.re) * half, (yk.im - ym.im) * half};   // (Yk + conj Ym)/2
    const Cx<V> yd{(yk.re - ym.re) * half, (yk.im + ym.im) * half};   // (Yk − conj Ym)/2
    const Cx<V> yo = cmul(yd, wr, -wi);                                // · W^{−k}
    z[k] = {ye.re - yo.im, ye.im + yo.re};                             // Ye + i·Yo
    z[mk] = {ye.re + yo.im, yo.re - ye.im};                            // conj(Ye) + i·conj(Yo)
  }
  if (m >= 2) {
    // k = m/2 is its own partner: X = conj(Z), Z' = conj(X·K) = Z·conj(K).
    const int64_t k = m / 2;
    z[k] = masked(k) ? Cx<V>{V::zero(), V::zero()} : cmulv(z[k], conj(K(k)));
  }

  // 4. Inverse FFT of size m (1/m is folded into the filter spectrum).
  stockham<V>(m, 1, false, z, t, pc.tw, 0, true);

  // 5. Store (⊙ v): y[2j] = Re z'[j], y[2j+1] = Im z'[j], the first n samples.
  for (int64_t t0 = 0; t0 < n; t0 += V::B) {
    const int cnt = int(std::min<int64_t>(V::B, n - t0));
    for (int i = 0; i < cnt; i += 2) xs[i] = z[(t0 + i) / 2].re, xs[i + 1] = z[(t0 + i) / 2].im;
    V::store_block(io.y, io.v, io.rows, t0, cnt, xs);
  }
}

}  // namespace tz::kernels::fft
