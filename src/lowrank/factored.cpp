// Tucker-, CP- and MPO-factored linear layers with a cost model for the contraction order (see
// tensorzip/lowrank_ops.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowrank/lapack.h"
#include "lowrank/tensor_ops.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/lowrank_ops.h"

namespace tz {
namespace {

int64_t prod(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t(1), std::multiplies<>()); }

void check_modes(const char* what, const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes) {
  require(!out_modes.empty() && out_modes.size() == in_modes.size() && out_modes.size() <= 6,
          std::string(what) + ": need as many output as input modes (1 to 6)");
  for (int64_t v : out_modes) require(v >= 1, std::string(what) + ": mode sizes must be >= 1");
  for (int64_t v : in_modes) require(v >= 1, std::string(what) + ": mode sizes must be >= 1");
}

// The cheapest order to turn modes of sizes `from` into sizes `to` one at a time (each step costs
// 2 · current size · to[k] per row, current size *= to[k] / from[k]); every permutation is tried.
std::vector<int> best_order(const std::vector<int64_t>& from, const std::vector<int64_t>& to, double start, double* cost) {
  std::vector<int> p(from.size());
  std::iota(p.begin(), p.end(), 0);
  std::vector<int> best = p;
  double best_cost = INFINITY;
  do {
    double size = start, c = 0;
    for (int k : p) {
      c += 2.0 * size * double(to[size_t(k)]);
      size = size / double(from[size_t(k)]) * double(to[size_t(k)]);
    }
    if (c < best_cost) best_cost = c, best = p;
  } while (std::next_permutation(p.begin(), p.end()));
  *cost = best_cost;
  return best;
}

std::string order_text(const char* prefix, const std::vector<int>& order) {
  std::string s;
  for (int k : order) s += (s.empty() ? "" : ",") + std::string(prefix) + std::to_string(k + 1);
  return s;
}

}  // namespace

FactoredLinear FactoredLinear::with_modes(Kind kind, const std::vector<int64_t>& out_modes,
                                          const std::vector<int64_t>& in_modes) {
  check_modes(kind == Kind::Tucker ? "tucker linear" : kind == Kind::Cp ? "cp linear" : "mpo linear", out_modes, in_modes);
  FactoredLinear f;
  f.kind_ = kind;
  f.out_modes_ = out_modes;
  f.in_modes_ = in_modes;
  f.out_ = prod(out_modes);
  f.in_ = prod(in_modes);
  return f;
}

FactoredLinear FactoredLinear::from_tucker(const Tucker<float>& t, const std::vector<int64_t>& out_modes,
                                           const std::vector<int64_t>& in_modes) {
  const size_t d = out_modes.size();
  require(t.factors.size() == 2 * d && t.core.shape.size() == 2 * d, "tucker linear: the factorization needs 2d modes");
  FactoredLinear f = with_modes(Kind::Tucker, out_modes, in_modes);
  f.ranks_ = t.core.shape;
  for (size_t k = 0; k < 2 * d; ++k) {
    const int64_t size = k < d ? out_modes[k] : in_modes[k - d];
    require(int64_t(t.factors[k].size()) == size * f.ranks_[k], "tucker linear: factor " + std::to_string(k) + " must be [" +
                                                                      std::to_string(size) + ", " + std::to_string(f.ranks_[k]) + "]");
    f.factors_.push_back(t.factors[k]);
  }
  f.core_ = t.core.data;
  const std::vector<int64_t> ri(f.ranks_.begin() + long(d), f.ranks_.end()), ro(f.ranks_.begin(), f.ranks_.begin() + long(d));
  double cin, cout;
  f.in_order_ = best_order(in_modes, ri, double(f.in_), &cin);
  f.out_order_ = best_order(ro, out_modes, double(prod(ro)), &cout);
  const double ccore = 2.0 * double(prod(ri)) * double(prod(ro));
  f.flops_per_row_ = cin + ccore + cout;
  f.plan_ = "tucker: contract " + order_text("i", f.in_order_) + ", core, expand " + order_text("o", f.out_order_);
  return f;
}

FactoredLinear FactoredLinear::from_cp(const Cp<float>& cp, const std::vector<int64_t>& out_modes,
                                       const std::vector<int64_t>& in_modes) {
  const size_t d = out_modes.size();
  require(cp.factors.size() == 2 * d, "cp linear: the factorization needs 2d modes");
  FactoredLinear f = with_modes(Kind::Cp, out_modes, in_modes);
  const int64_t r = cp.rank;
  f.ranks_ = {r};
  // Khatri-Rao products over the output and the input modes: KR[(i_1..i_d), r] = Π_k A_k[i_k, r].
  const auto kr = [&](size_t first, const std::vector<int64_t>& modes) {
    std::vector<float> m(size_t(prod(modes) * r), 1.f);
    std::vector<int64_t> idx(modes.size(), 0);
    for (int64_t row = 0; row < prod(modes); ++row) {
      for (size_t k = 0; k < modes.size(); ++k) {
        require(int64_t(cp.factors[first + k].size()) == modes[k] * r, "cp linear: factor sizes do not match the modes");
        for (int64_t c = 0; c < r; ++c) m[size_t(row * r + c)] *= cp.factors[first + k][size_t(idx[k] * r + c)];
      }
      for (int k = int(modes.size()) - 1; k >= 0 && ++idx[size_t(k)] == modes[size_t(k)]; --k) idx[size_t(k)] = 0;
    }
    return m;
  };
  std::vector<float> kin = kr(d, in_modes), kout = kr(0, out_modes);
  // Stored for the two GEMMs: A = KR_inᵀ [r, in], B = KR_out·diag(λ) [out, r].
  std::vector<float> a(size_t(r * f.in_));
  for (int64_t i = 0; i < f.in_; ++i)
    for (int64_t c = 0; c < r; ++c) a[size_t(c * f.in_ + i)] = kin[size_t(i * r + c)];
  for (int64_t o = 0; o < f.out_; ++o)
    for (int64_t c = 0; c < r; ++c) kout[size_t(o * r + c)] *= cp.lambda[size_t(c)];
  f.factors_ = {std::move(a), std::move(kout)};
  f.flops_per_row_ = 2.0 * double(r) * double(f.in_ + f.out_);
  f.plan_ = "cp: x·KR_inᵀ, ·diag(λ)·KR_outᵀ (rank " + std::to_string(r) + ")";
  return f;
}

FactoredLinear FactoredLinear::from_mpo(const TensorTrain<float>& tt, const std::vector<int64_t>& out_modes,
                                        const std::vector<int64_t>& in_modes) {
  const size_t d = out_modes.size();
  require(tt.cores.size() == d && tt.ranks.size() == d + 1, "mpo linear: need one core per mode pair");
  FactoredLinear f = with_modes(Kind::Mpo, out_modes, in_modes);
  f.ranks_ = tt.ranks;
  for (size_t k = 0; k < d; ++k)
    require(int64_t(tt.cores[k].size()) == tt.ranks[k] * out_modes[k] * in_modes[k] * tt.ranks[k + 1],
            "mpo linear: core " + std::to_string(k) + " does not match its modes and bond ranks");
  f.factors_ = tt.cores;
  // Sweep cost: step k turns [a, r_{k-1} i_k, b] into [a, o_k r_k, b], 2·a·b·(r i)·(o r) per row.
  const auto sweep = [&](bool rev) {
    double c = 0;
    for (size_t s = 0; s < d; ++s) {
      const size_t k = rev ? d - 1 - s : s;
      double a = 1, b = 1;
      for (size_t j = 0; j < d; ++j) {
        const bool done = rev ? j > k : j < k;
        if (done) a *= double(out_modes[j]);
        else if (j != k) b *= double(in_modes[j]);
      }
      const double rin = double(rev ? tt.ranks[k + 1] : tt.ranks[k]), rout = double(rev ? tt.ranks[k] : tt.ranks[k + 1]);
      c += 2.0 * a * b * rin * double(in_modes[k]) * double(out_modes[k]) * rout;
    }
    return c;
  };
  const double lr = sweep(false), rl = sweep(true);
  f.reverse_ = rl < lr;
  f.flops_per_row_ = std::min(lr, rl);
  f.plan_ = std::string("mpo: ") + (f.reverse_ ? "right-to-left" : "left-to-right") + " sweep";
  return f;
}

void FactoredLinear::apply(const float* x, int64_t n, float* y) const {
  require(x != nullptr && y != nullptr, "factored linear: null buffer");
  if (n == 0) return;
  const size_t d = out_modes_.size();
  if (kind_ == Kind::Cp) {
    const int64_t r = ranks_[0];
    std::vector<float> h(size_t(n * r));
    gemm_f32(n, r, in_, x, in_, factors_[0].data(), in_, h.data(), r);
    gemm_f32(n, out_, r, h.data(), r, factors_[1].data(), r, y, out_);
    return;
  }
  if (kind_ == Kind::Tucker) {
    DenseTensor<float> z;  // [n, i_1..i_d] -> [n, b_1..b_d]
    z.shape = {n};
    z.shape.insert(z.shape.end(), in_modes_.begin(), in_modes_.end());
    z.data.assign(x, x + n * in_);
    for (int k : in_order_)
      z = lowrank::mode_product(z, k + 1, factors_[d + size_t(k)].data(), ranks_[d + size_t(k)], true);
    const int64_t pa = std::accumulate(ranks_.begin(), ranks_.begin() + long(d), int64_t(1), std::multiplies<>());
    const int64_t pb = int64_t(z.data.size()) / n;
    DenseTensor<float> q;  // [n, a_1..a_d]
    q.shape = {n};
    q.shape.insert(q.shape.end(), ranks_.begin(), ranks_.begin() + long(d));
    q.data.resize(size_t(n * pa));
    gemm_f32(n, pa, pb, z.data.data(), pb, core_.data(), pb, q.data.data(), pa);
    for (int k : out_order_) q = lowrank::mode_product(q, k + 1, factors_[size_t(k)].data(), out_modes_[size_t(k)], false);
    std::copy(q.data.begin(), q.data.end(), y);
    return;
  }
  // MPO sweep over [a, (r i_k), b]: each step one GEMM after moving the contracted axis to the front.
  std::vector<int64_t> om = out_modes_, im = in_modes_, rk = ranks_;
  std::vector<std::vector<float>> cores = factors_;
  DenseTensor<float> s;
  s.shape = {n};
  s.shape.insert(s.shape.end(), in_modes_.begin(), in_modes_.end());
  s.data.assign(x, x + n * in_);
  if (reverse_) {  // reversed mode order: cores [r_k, o, i, r_{k-1}], x and y transposed accordingly
    std::reverse(om.begin(), om.end());
    std::reverse(im.begin(), im.end());
    std::reverse(rk.begin(), rk.end());
    std::reverse(cores.begin(), cores.end());
    for (size_t k = 0; k < d; ++k) {
      DenseTensor<float> c{{rk[k + 1], om[k] * im[k], rk[k]}, cores[k]};
      cores[k] = lowrank::permute(c, {2, 1, 0}).data;
    }
    std::vector<int> p{0};
    for (int k = int(d); k >= 1; --k) p.push_back(k);
    s = lowrank::permute(s, p);
  }
  int64_t a = n;
  for (size_t k = 0; k < d; ++k) {
    int64_t b = 1;
    for (size_t j = k + 1; j < d; ++j) b *= im[j];
    const int64_t kk = rk[k] * im[k], mm = om[k] * rk[k + 1];
    DenseTensor<float> v{{a, kk, b}, std::move(s.data)};
    v = lowrank::permute(v, {1, 0, 2});  // [K, a, b]
    // Core [r, o, i, r'] -> [(r i), (o r')]: C'[(r,i), (o,r')].
    DenseTensor<float> c{{rk[k], om[k], im[k], rk[k + 1]}, cores[k]};
    const auto cp = lowrank::permute(c, {0, 2, 1, 3});
    std::vector<float> out(size_t(mm * a * b));
    lowrank::gemm(true, false, mm, a * b, kk, 1.f, cp.data.data(), mm, v.data.data(), a * b, 0.f, out.data(), a * b);
    DenseTensor<float> w{{mm, a, b}, std::move(out)};
    s = lowrank::permute(w, {1, 0, 2});  // [a, (o_k r_{k+1}), b]
    a *= om[k];
  }
  if (reverse_) {  // y is in reversed output-mode order
    DenseTensor<float> t;
    t.shape = {n};
    t.shape.insert(t.shape.end(), om.begin(), om.end());
    t.data = std::move(s.data);
    std::vector<int> p{0};
    for (int k = int(d); k >= 1; --k) p.push_back(k);
    s = lowrank::permute(t, p);
  }
  std::copy(s.data.begin(), s.data.end(), y);
}

}  // namespace tz
