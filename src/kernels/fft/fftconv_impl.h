// The fused per-row-group convolution, written once over a lane type V (see fft_types.h):
// load (gate) -> real-input packing -> forward FFT (depth-first radix-4 DIF, digit-reversed out)
// -> spectral product with the cached filter spectrum (real-FFT split and merge fused in, bins read
// through the digit-reversal table) -> inverse FFT (radix-4 DIT) -> store (gate). A group is V::L rows
// of the same batch index and consecutive h; all of it stays in the thread's workspace.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "kernels/fft/recursive.h"
#include "kernels/fft/fft_types.h"
#include "tensorzip/fftconv.h"
#include "tensorzip/memory.h"

namespace tz::kernels::fft {

// Everything the kernels need from a plan, in one place.
struct PlanCore {
  int64_t n = 0;      // sequence length
  int64_t h = 0;      // channels
  int64_t m = 0;      // complex FFT size: n (causal, real length 2n) or n/2 (circular, real length n)
  ConvMode mode = ConvMode::Causal;
  int lanes = 1;      // rows per group of the kernel the plan was built for
  Twiddles tw;        // of the size-m complex FFT
  std::vector<int32_t> perm;  // where the forward transform leaves bin k (digit reversal)
  // The bin at each position; only for m >= kLeafPairMinPoints, whose plans also keep the filter
  // spectrum in position order (bin m after position m − 1), so that the spectral step, visiting
  // positions in order, reads it in order.
  std::vector<int32_t> iperm;
  // With iperm, per position p of a bin k: the position of bin m − k, and e^{-2πi k/(2m)} (re, im)
  // — the spectral step's other operands, in the order it visits positions (indexed by bin, each
  // was a cache miss: the step took a third of a 1M-point call).
  std::vector<int32_t> mirror_pos;
  std::vector<float> wl_pos;
  std::vector<float> wl;    // e^{-2πi k / (2m)}, k = 0 .. m/2, as (re, im)
  // Filter spectra, scaled by 1/m: per group of `lanes` channels, for k = 0 .. m (or by position,
  // see iperm): [group][k][re lanes][im lanes].
  LargeVector<float> spec;  // huge pages: read whole on every call (134 MB at 1M points, 16 lanes)
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
  const uint16_t* ub[16];  // bf16 input rows instead of u (converted on load), or nullptr
  const float* w[16];  // gating on the input (nullptr: none)
  const float* v[16];  // gating on the output (nullptr: none)
  float* y[16];
  int rows;            // valid lanes
  bool stream = false;  // y rows 64-byte aligned, output larger than the caches: non-temporal stores
};

template <class V>
inline Cx<V> cmulv(Cx<V> a, Cx<V> b) {
  return {V::fms(a.re, b.re, a.im * b.im), V::fma(a.re, b.im, a.im * b.re)};
}
template <class V> inline Cx<V> conj(Cx<V> a) { return {a.re, V::zero() - a.im}; }

// The convolution of one row group in stages, each over a range, so that a group too large for
// one thread (few rows, long sequences) can be split across the pool stage by stage; conv_group
// runs them all on one thread. Ranges: Load / Store — complex index j (multiples of 8);
// FwdTop / InvTop — butterfly index p in [0, m/4); FwdBlock / InvBlock — quarter s in [0, 4);
// Spectral — bin k in [0, m/2]. Plans with leaf_pairs(m) run BlockPairs instead of FwdBlock,
// Spectral and InvBlock — top block s in [0, 16): those three for s and its mirrored block, for
// the s that come first in their pair.
enum class Stage { Load, FwdTop, FwdBlock, Spectral, InvBlock, InvTop, Store, BlockPairs };
// From m = 16K on (where a 16-row workspace, 2 MB, leaves L2) the two top levels are fused into
// one pass (from m = 1M with the load and the store fused in: see load_fwd16): FwdTop / InvTop then
// range over p in [0, m/16) (in multiples of 8) and there are 16 blocks; below, one
// radix-4 level over [0, m/4) and 4 blocks (measured: fusing small transforms only adds spills).
inline int64_t top_blocks(int64_t m) { return m >= 16384 ? 16 : 4; }
inline int64_t top_butterflies(int64_t m) { return m / top_blocks(m); }
constexpr int64_t kFuseIoMinPoints = int64_t(1) << 20;

template <class V>
inline void load_samples(const RowPtrs& io, int64_t t0, int cnt, V* xs) {
  if (io.ub[0] != nullptr) V::load_block_bf16(io.ub, io.w, io.rows, t0, cnt, xs);
  else V::load_block(io.u, io.w, io.rows, t0, cnt, xs);
}

// The largest transforms (m >= kFuseIoMinPoints): loading the rows is fused into the top pass (two
// radix-4 levels), and the inverse top pass stores y directly, so the workspace is not written by
// a load pass and read back, nor written and read back by a store pass (at m = 1M with 16 rows:
// 268 MB of traffic fewer each way; measured 9 % faster on one thread). Below, where the workspace
// stays in L3, the separate sequential passes measured faster (64K-256K: 10-20 %): the fused load
// reads 8 blocks of 16 rows at once, more streams than the prefetchers follow. Butterflies
// p .. p + P − 1 take their 16 inputs from 16 blocks of V::B samples of every row (8 blocks when
// causal: the rest is the zero padding), transposed to lanes through a buffer in L1. Ranges of p
// are multiples of P.
template <class V>
void load_fwd16(const PlanCore& pc, const RowPtrs& io, Cx<V>* z, int64_t p0, int64_t p1) {
  constexpr int P = V::B / 2;
  const int64_t m = pc.m, q16 = m / 16;
  const int live = pc.n / 2 < m ? 8 : 16;
  Cx<V> buf[16][P];
  V xs[V::B];
  for (int64_t p = p0; p < p1; p += P) {
    for (int i = 0; i < live; ++i) {
      load_samples<V>(io, 2 * (p + i * q16), V::B, xs);
      for (int j = 0; j < P; ++j) buf[i][j] = {xs[2 * j], xs[2 * j + 1]};
    }
    for (int j = 0; j < P; ++j) {
      Cx<V> e[16];
      for (int i = 0; i < 16; ++i) e[i] = i < live ? buf[i][j] : Cx<V>{V::zero(), V::zero()};
      dif16_regs<V>(e, pc.tw, 0, m, p + j);
      for (int i = 0; i < 16; ++i) z[p + j + i * q16] = e[i];
    }
  }
}

template <class V>
void inv16_store(const PlanCore& pc, const RowPtrs& io, Cx<V>* z, int64_t p0, int64_t p1) {
  constexpr int P = V::B / 2;
  const int64_t m = pc.m, q16 = m / 16;
  const int live = pc.n / 2 < m ? 8 : 16;  // causal: outputs 8 .. 15 are past n, dropped
  Cx<V> buf[16][P];
  V xs[V::B];
  for (int64_t p = p0; p < p1; p += P) {
    for (int j = 0; j < P; ++j) {
      Cx<V> e[16];
      for (int i = 0; i < 16; ++i) e[i] = z[p + j + i * q16];
      dit16_regs<V>(e, pc.tw, 0, m, p + j);
      for (int i = 0; i < live; ++i) buf[i][j] = e[i];
    }
    for (int i = 0; i < live; ++i) {
      for (int j = 0; j < P; ++j) xs[2 * j] = buf[i][j].re, xs[2 * j + 1] = buf[i][j].im;
      V::store_block(io.y, io.v, io.rows, 2 * (p + i * q16), V::B, xs, io.stream);
    }
  }
  if (io.stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the non-temporal stores
}

// The spectral product, one bin at a time. Bins k and m−k are processed together: split Z into the
// spectrum X of the real sequence, multiply by the filter K, merge back into Z' for a size-m
// inverse. bin(k) for k in [0, m/2]: k = 0 also does bin m; k = m/2 is its own partner.
template <class V>
struct SpectralStep {
  const PlanCore& pc;
  Cx<V>* z;
  const float* ks;
  const int32_t* P;
  bool corr;
  SpectralStep(const PlanCore& pc_, int64_t group, Cx<V>* z_, bool corr_)
      : pc(pc_), z(z_), ks(pc_.group_spec(group)), P(pc_.perm.data()), corr(corr_) {}
  // The filter at spectrum index i (bin k, or for position-ordered spectra its position).
  Cx<V> Ki(int64_t i) const {
    const Cx<V> c{V::load(ks + (2 * i) * V::L), V::load(ks + (2 * i + 1) * V::L)};
    return corr ? conj(c) : c;
  }
  Cx<V> K(int64_t k) const { return Ki(pc.iperm.empty() || k == pc.m ? k : P[k]); }
  bool masked(int64_t k) const { return !pc.skip.empty() && pc.skip[size_t(k / kFreqMaskBlock)]; }
  void bin(int64_t k) const {
    const int64_t m = pc.m;
    const V half = V::set1(0.5f);
    if (k == 0) {
      // k = 0 pairs with bin m: X0 = Re Z0 + Im Z0, Xm = Re Z0 − Im Z0.
      const Cx<V> z0 = z[P[0]];
      const Cx<V> x0{z0.re + z0.im, V::zero()}, xm{z0.re - z0.im, V::zero()};
      const Cx<V> y0 = masked(0) ? Cx<V>{V::zero(), V::zero()} : cmulv(x0, K(0));
      const Cx<V> ym = masked(m) ? Cx<V>{V::zero(), V::zero()} : cmulv(xm, K(m));
      const Cx<V> ye{(y0.re + ym.re) * half, (y0.im - ym.im) * half};   // (Y0 + conj Ym)/2
      const Cx<V> yo{(y0.re - ym.re) * half, (y0.im + ym.im) * half};   // (Y0 − conj Ym)/2
      z[P[0]] = {ye.re - yo.im, ye.im + yo.re};                          // Ye + i·Yo
      return;
    }
    if (k == m / 2) {
      // k = m/2 is its own partner: X = conj(Z), Z' = conj(X·K) = Z·conj(K).
      z[P[k]] = masked(k) ? Cx<V>{V::zero(), V::zero()} : cmulv(z[P[k]], conj(K(k)));
      return;
    }
    const int64_t ik = pc.iperm.empty() ? k : P[k], im = pc.iperm.empty() ? m - k : P[m - k];
    pair(k, P[k], P[m - k], ik, im, pc.wl[size_t(2 * k)], pc.wl[size_t(2 * k + 1)]);
  }
  // Bins k and m − k (0 < k < m/2) at positions pk, pm of z and indices ik, im of the spectrum;
  // wr + i·wi = e^{-2πi k/(2m)}.
  void pair(int64_t k, int64_t pk, int64_t pm, int64_t ik, int64_t im, float wr, float wi) const {
    const int64_t mk = pc.m - k;
    const V half = V::set1(0.5f);
    const Cx<V> zk = z[pk], zm = z[pm];
    if (masked(k) && masked(mk)) {
      z[pk] = z[pm] = {V::zero(), V::zero()};
      return;
    }
    const Cx<V> xe{(zk.re + zm.re) * half, (zk.im - zm.im) * half};    // (Zk + conj Zm)/2
    const Cx<V> xo{(zk.im + zm.im) * half, (zm.re - zk.re) * half};    // −i (Zk − conj Zm)/2
    const Cx<V> wxo = cmul(xo, wr, wi);
    const Cx<V> xk{xe.re + wxo.re, xe.im + wxo.im};                   // Xk = Xe + W^k Xo
    const Cx<V> xmk = conj(Cx<V>{xe.re - wxo.re, xe.im - wxo.im});    // Xm = conj(Xe − W^k Xo)
    const Cx<V> yk = masked(k) ? Cx<V>{V::zero(), V::zero()} : cmulv(xk, Ki(ik));
    const Cx<V> ym = masked(mk) ? Cx<V>{V::zero(), V::zero()} : cmulv(xmk, Ki(im));
    const Cx<V> ye{(yk.re + ym.re) * half, (yk.im - ym.im) * half};   // (Yk + conj Ym)/2
    const Cx<V> yd{(yk.re - ym.re) * half, (yk.im + ym.im) * half};   // (Yk − conj Ym)/2
    const Cx<V> yo = cmul(yd, wr, -wi);                                // · W^{−k}
    z[pk] = {ye.re - yo.im, ye.im + yo.re};                          // Ye + i·Yo
    z[pm] = {ye.re + yo.im, yo.re - ye.im};                         // conj(Ye) + i·conj(Yo)
  }
  // The bin at position p, if it is a k <= m/2 (else its pair is done from the other position).
  void at_position(int64_t p) const {
    const int64_t k = pc.iperm[size_t(p)];
    if (k == 0 || k == pc.m / 2) return bin(k);
    if (k > pc.m / 2) return;
    const int64_t pm = pc.mirror_pos[size_t(p)];
    pair(k, p, pm, p, pm, pc.wl_pos[size_t(2 * p)], pc.wl_pos[size_t(2 * p + 1)]);
  }
};

// From this size on, the top blocks (m/16 points) and, below them, the leaves of m/256 points
// (1M: 4K points, 512 KB with 16 rows, in L2) are transformed in mirrored pairs — a block and the
// block holding its mirrored bins m − k — and each leaf pair is finished, multiplied by the filter
// and taken back through its inverse levels while in cache: the spectral step is no separate pass
// over the whole workspace (its bin pairs far apart), and a block pair (16 MB at 1M) stays in L3
// between its passes. With the spectral step's operands in position order (PlanCore::iperm),
// measured: 1M points 17-20 % faster on one and two threads, 64K 3-4 %, 256K ±1 %.
constexpr int64_t kLeafPairMinPoints = int64_t(1) << 16;
inline bool leaf_pairs(int64_t m) { return m >= kLeafPairMinPoints; }

// Top block s and its mirrored block (when s comes first in the pair): two levels each, then the
// leaf pairs, then the two inverse levels.
template <class V>
void block_pair(const PlanCore& pc, int64_t group, Cx<V>* z, int64_t s, bool corr) {
  const int64_t m = pc.m, q = m / 16, leaf = m / 256;
  // Block (or leaf) holding the mirrored bins of the one at position p, in units of `size`.
  const auto mirror = [&](int64_t p, int64_t size) { return pc.mirror_pos[size_t(p)] / size; };
  const auto both = [](int64_t a, int64_t b, auto f) {
    f(a);
    if (b != a) f(b);
  };
  const int64_t s2 = mirror(s * q, q);
  if (s2 < s) return;
  const SpectralStep<V> spec(pc, group, z, corr);
  both(s, s2, [&](int64_t c) { dif16_butterflies<V>(z + c * q, q, pc.tw, 0, q / 16, 2); });
  both(s, s2, [&](int64_t c) {
    for (int64_t b = c * 16; b < (c + 1) * 16; ++b) {
      // Bins are k ≡ c (mod 256) in leaf b, so their partners m − k all lie in one leaf.
      const int64_t b2 = mirror(b * leaf, leaf);
      if (b2 < b) continue;
      both(b, b2, [&](int64_t l) { dif4<V>(z + l * leaf, leaf, pc.tw, 4); });
      both(b, b2, [&](int64_t l) {
        for (int64_t p = l * leaf; p < (l + 1) * leaf; ++p) spec.at_position(p);
      });
      both(b, b2, [&](int64_t l) { dit4_inv<V>(z + l * leaf, leaf, pc.tw, 4); });
    }
  });
  both(s, s2, [&](int64_t c) { dit16_butterflies<V>(z + c * q, q, pc.tw, 0, q / 16, 2); });
}

// z: workspace of pc.m complex vectors. corr: multiply by conj(K) instead of K — the
// correlation with the filter, i.e. the input gradient of the convolution.
template <class V>
void conv_stage(const PlanCore& pc, Stage stage, int64_t group, const RowPtrs& io, Cx<V>* z, int64_t r0, int64_t r1,
                bool corr) {
  const int64_t n = pc.n, m = pc.m, nb = top_blocks(m), q = m / nb;
  const int sub = nb == 16 ? 2 : 1;  // twiddle stage of the blocks
  const bool fio = nb == 16 && m >= kFuseIoMinPoints;
  switch (stage) {
    case Stage::Load: {
      if (fio) return;  // fused into FwdTop
      // The real sequence x (u ⊙ w, zero-padded to 2n when causal) packed as z[j] = x[2j] + i·x[2j+1].
      // V::load_block reads V::B consecutive samples of every row and transposes them to lanes
      // (V::B = lanes, or 2 for the one-lane type: samples go in pairs).
      V xs[V::B];
      for (int64_t t0 = 2 * r0; t0 < std::min(n, 2 * r1); t0 += V::B) {
        const int cnt = int(std::min<int64_t>(V::B, n - t0));
        load_samples<V>(io, t0, cnt, xs);
        for (int i = 0; i < cnt; i += 2) z[(t0 + i) / 2] = {xs[i], xs[i + 1]};
      }
      for (int64_t j = std::max(r0, n / 2); j < r1; ++j) z[j] = {V::zero(), V::zero()};  // causal padding
      return;
    }
    case Stage::FwdTop:  // bins end digit-reversed
      if (fio) return load_fwd16<V>(pc, io, z, r0, r1);
      if (nb == 16) return dif16_butterflies<V>(z, m, pc.tw, r0, r1, 0);
      return dif4_butterflies<V>(z, m, pc.tw, 0, r0, r1);
    case Stage::FwdBlock:
      for (int64_t s = r0; s < r1; ++s) dif4<V>(z + s * q, q, pc.tw, sub);
      return;
    case Stage::InvBlock:
      for (int64_t s = r0; s < r1; ++s) dit4_inv<V>(z + s * q, q, pc.tw, sub);
      return;
    case Stage::InvTop:  // 1/m is in the filter spectrum
      if (fio) return inv16_store<V>(pc, io, z, r0, r1);
      if (nb == 16) return dit16_butterflies<V>(z, m, pc.tw, r0, r1, 0);
      return dit4_butterflies<V>(z, m, pc.tw, 0, r0, r1);
    case Stage::Store: {
      if (fio) return;  // fused into InvTop
      // y[2j] = Re z'[j], y[2j+1] = Im z'[j] (⊙ v), the first n samples.
      V xs[V::B];
      for (int64_t t0 = 2 * r0; t0 < std::min(n, 2 * r1); t0 += V::B) {
        const int cnt = int(std::min<int64_t>(V::B, n - t0));
        for (int i = 0; i < cnt; i += 2) xs[i] = z[(t0 + i) / 2].re, xs[i + 1] = z[(t0 + i) / 2].im;
        V::store_block(io.y, io.v, io.rows, t0, cnt, xs, io.stream);
      }
      if (io.stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the non-temporal stores
      return;
    }
    case Stage::BlockPairs:
      for (int64_t s = r0; s < r1; ++s) block_pair<V>(pc, group, z, s, corr);
      return;
    case Stage::Spectral: break;
  }
  const SpectralStep<V> spec(pc, group, z, corr);
  for (int64_t k = r0; k < std::min(r1, m / 2 + 1); ++k) spec.bin(k);
}

template <class V>
void conv_group(const PlanCore& pc, int64_t group, const RowPtrs& io, Cx<V>* z, bool corr = false) {
  const int64_t m = pc.m;
  conv_stage<V>(pc, Stage::Load, group, io, z, 0, m, corr);
  conv_stage<V>(pc, Stage::FwdTop, group, io, z, 0, top_butterflies(m), corr);
  if (leaf_pairs(m)) {
    conv_stage<V>(pc, Stage::BlockPairs, group, io, z, 0, 16, corr);
  } else {
    conv_stage<V>(pc, Stage::FwdBlock, group, io, z, 0, top_blocks(m), corr);
    conv_stage<V>(pc, Stage::Spectral, group, io, z, 0, m / 2 + 1, corr);
    conv_stage<V>(pc, Stage::InvBlock, group, io, z, 0, top_blocks(m), corr);
  }
  conv_stage<V>(pc, Stage::InvTop, group, io, z, 0, top_butterflies(m), corr);
  conv_stage<V>(pc, Stage::Store, group, io, z, 0, pc.n / 2, corr);
}

// ---------------------------------------------------------------- backward: filter gradient
// Spectrum X[0..m] of the real rows (⊙ gate), with z as scratch.
template <class V>
void real_spectrum(const PlanCore& pc, const float* const* rows, const float* const* gate, int nrows, Cx<V>* z, Cx<V>* x) {
  const int64_t n = pc.n, m = pc.m;
  V xs[V::B];
  for (int64_t t0 = 0; t0 < n; t0 += V::B) {
    const int cnt = int(std::min<int64_t>(V::B, n - t0));
    V::load_block(rows, gate, nrows, t0, cnt, xs);
    for (int i = 0; i < cnt; i += 2) z[(t0 + i) / 2] = {xs[i], xs[i + 1]};
  }
  for (int64_t j = n / 2; j < m; ++j) z[j] = {V::zero(), V::zero()};
  dif4<V>(z, m, pc.tw, 0);
  const int32_t* P = pc.perm.data();
  const V half = V::set1(0.5f);
  x[0] = {z[P[0]].re + z[P[0]].im, V::zero()};
  x[m] = {z[P[0]].re - z[P[0]].im, V::zero()};
  for (int64_t k = 1; k < m / 2; ++k) {
    const Cx<V> zk = z[P[k]], zm = z[P[m - k]];
    const Cx<V> xe{(zk.re + zm.re) * half, (zk.im - zm.im) * half};
    const Cx<V> xo{(zk.im + zm.im) * half, (zm.re - zk.re) * half};
    const Cx<V> wxo = cmul(xo, pc.wl[size_t(2 * k)], pc.wl[size_t(2 * k + 1)]);
    x[k] = {xe.re + wxo.re, xe.im + wxo.im};
    x[m - k] = conj(Cx<V>{xe.re - wxo.re, xe.im - wxo.im});
  }
  x[m / 2] = conj(z[P[m / 2]]);
}

// The filter spectra of one group's lanes, in the plan's layout: rows are the filters zero-padded
// to n; dst = the group's block of pc.spec, bins scaled by 1/m, masked bins zero, positions by
// pc.iperm when the plan keeps them. Computed in f32 by the same transform the rows go through
// (the float64 scalar DFT it replaces took 3–5x the time of a B = 8 convolution). ws: m + (m + 1)
// complex vectors.
template <class V>
void filter_spectrum(const PlanCore& pc, const float* const* rows, int nrows, float* dst, Cx<V>* ws) {
  const int64_t m = pc.m;
  constexpr int L = V::L;
  Cx<V>* z = ws;
  Cx<V>* x = ws + m;
  const float* nog[16] = {};
  real_spectrum<V>(pc, rows, nog, nrows, z, x);
  const V s = V::set1(1.0f / float(m)), zero = V::zero();
  for (int64_t k = 0; k <= m; ++k) {
    const bool off = !pc.skip.empty() && pc.skip[size_t(k / kFreqMaskBlock)];
    const int64_t i = pc.iperm.empty() || k == m ? k : pc.perm[size_t(k)];
    (off ? zero : x[k].re * s).store(dst + (2 * i) * L);
    (off ? zero : x[k].im * s).store(dst + (2 * i + 1) * L);
  }
}

// dk for one channel group: Σ_b corr(dy_b ⊙ v_b, u_b ⊙ w_b), the first nk lags, into dk rows.
// Spectra are summed over the batch, then one inverse. ws: m + 3·(m+1) complex vectors.
template <class V>
void dk_group(const PlanCore& pc, int64_t h0, int nrows, int64_t batch, const float* dy, const float* v, const float* u,
              const float* w, int64_t nk, float* dk, Cx<V>* ws) {
  const int64_t m = pc.m, n = pc.n;
  Cx<V>* z = ws;
  Cx<V>* a = z + m;
  Cx<V>* b = a + (m + 1);
  Cx<V>* s = b + (m + 1);
  for (int64_t k = 0; k <= m; ++k) s[k] = {V::zero(), V::zero()};
  for (int64_t bi = 0; bi < batch; ++bi) {
    const float* r1[16] = {};
    const float* g1[16] = {};
    const float* r2[16] = {};
    const float* g2[16] = {};
    for (int l = 0; l < nrows; ++l) {
      const size_t off = size_t((bi * pc.h + h0 + l) * n);
      r1[l] = dy + off;
      g1[l] = v ? v + off : nullptr;
      r2[l] = u + off;
      g2[l] = w ? w + off : nullptr;
    }
    real_spectrum<V>(pc, r1, g1, nrows, z, a);
    real_spectrum<V>(pc, r2, g2, nrows, z, b);
    for (int64_t k = 0; k <= m; ++k) {
      const Cx<V> p = cmulv(a[k], conj(b[k]));
      s[k] = {s[k].re + p.re, s[k].im + p.im};
    }
  }
  // Back to time: merge the real spectrum into the packed complex one, inverse, scale 1/m.
  const V half = V::set1(0.5f), inv_m = V::set1(1.0f / float(m));
  const int32_t* P = pc.perm.data();
  {
    const Cx<V> y0 = s[0], ym = s[m];
    const Cx<V> ye{(y0.re + ym.re) * half, (y0.im - ym.im) * half};
    const Cx<V> yo{(y0.re - ym.re) * half, (y0.im + ym.im) * half};
    z[P[0]] = {ye.re - yo.im, ye.im + yo.re};
  }
  for (int64_t k = 1; k < m / 2; ++k) {
    const Cx<V> yk = s[k], ym = s[m - k];
    const Cx<V> ye{(yk.re + ym.re) * half, (yk.im - ym.im) * half};
    const Cx<V> yd{(yk.re - ym.re) * half, (yk.im + ym.im) * half};
    const Cx<V> yo = cmul(yd, pc.wl[size_t(2 * k)], -pc.wl[size_t(2 * k + 1)]);
    z[P[k]] = {ye.re - yo.im, ye.im + yo.re};
    z[P[m - k]] = {ye.re + yo.im, yo.re - ye.im};
  }
  z[P[m / 2]] = conj(s[m / 2]);
  dit4_inv<V>(z, m, pc.tw, 0);
  float* out[16] = {};
  const float* nog[16] = {};
  for (int l = 0; l < nrows; ++l) out[l] = dk + (h0 + l) * nk;
  // Store the first nk lags; rows of dk have stride nk, so write through a row-length-nk view.
  V xs[V::B];
  for (int64_t t0 = 0; t0 < nk; t0 += V::B) {
    const int cnt = int(std::min<int64_t>(V::B, nk - t0));
    for (int i = 0; i < V::B; i += 2) {
      const Cx<V> c = (t0 + i) / 2 < m ? z[(t0 + i) / 2] : Cx<V>{V::zero(), V::zero()};
      xs[i] = c.re * inv_m;
      xs[i + 1] = c.im * inv_m;
    }
    V::store_block(out, nog, nrows, t0, cnt, xs);
  }
}

}  // namespace tz::kernels::fft
