// Tucker (HOSVD + HOOI), CP-ALS, TT-SVD and matrix product operators (see tensorzip/decompose.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "lowrank/lapack.h"
#include "lowrank/tensor_ops.h"
#include "tensorzip/decompose.h"

namespace tz {
namespace lowrank {
// out[i_perm...] = a[i...]: out mode j is a's mode perm[j].
template <class T>
DenseTensor<T> permute(const DenseTensor<T>& a, const std::vector<int>& perm) {
  const int d = int(a.shape.size());
  std::vector<int64_t> stride(static_cast<size_t>(d), 1);
  for (int k = d - 2; k >= 0; --k) stride[size_t(k)] = stride[size_t(k + 1)] * a.shape[size_t(k + 1)];
  DenseTensor<T> out;
  out.shape.resize(static_cast<size_t>(d));
  for (int j = 0; j < d; ++j) out.shape[size_t(j)] = a.shape[size_t(perm[size_t(j)])];
  out.data.resize(a.data.size());
  std::vector<int64_t> idx(static_cast<size_t>(d), 0);
  int64_t src = 0;
  for (size_t o = 0; o < out.data.size(); ++o) {
    out.data[o] = a.data[size_t(src)];
    for (int j = d - 1; j >= 0; --j) {  // odometer over the output index
      const int ax = perm[size_t(j)];
      if (++idx[size_t(j)] < out.shape[size_t(j)]) {
        src += stride[size_t(ax)];
        break;
      }
      src -= stride[size_t(ax)] * (out.shape[size_t(j)] - 1);
      idx[size_t(j)] = 0;
    }
  }
  return out;
}

std::vector<int> front_(int d, int k) {
  std::vector<int> p{k};
  for (int j = 0; j < d; ++j)
    if (j != k) p.push_back(j);
  return p;
}
std::vector<int> inverse(const std::vector<int>& p) {
  std::vector<int> q(p.size());
  for (size_t i = 0; i < p.size(); ++i) q[size_t(p[i])] = int(i);
  return q;
}

// Mode-k unfolding: shape[k] x (the other modes in order), row-major.
template <class T>
std::vector<T> unfold(const DenseTensor<T>& a, int k) {
  return permute(a, front_(int(a.shape.size()), k)).data;
}

// a ×_k M with M (J x n_k), or with Mᵀ when `transposed` (M then n_k x J).
template <class T>
DenseTensor<T> mode_product(const DenseTensor<T>& a, int k, const T* mat, int64_t j, bool transposed) {
  const int d = int(a.shape.size());
  const auto p = front_(d, k);
  const DenseTensor<T> f = permute(a, p);
  const int64_t nk = a.shape[size_t(k)], rest = int64_t(a.data.size()) / nk;
  DenseTensor<T> y;
  y.shape = f.shape;
  y.shape[0] = j;
  y.data.resize(size_t(j * rest));
  lowrank::gemm(transposed, false, j, rest, nk, T(1), mat, transposed ? j : nk, f.data.data(), rest, T(0), y.data.data(), rest);
  return permute(y, inverse(p));
}

}  // namespace lowrank
using lowrank::permute;
using lowrank::mode_product;
using lowrank::unfold;
using lowrank::inverse;
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int64_t product(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t(1), [](int64_t a, int64_t b) { return a * b; });
}

template <class T>
void check_tensor(const char* what, const DenseTensor<T>& a) {
  const int d = int(a.shape.size());
  require(d >= 2 && d <= 6, std::string(what) + ": tensors of order 2 to 6 are supported, got order " + std::to_string(d));
  for (int64_t s : a.shape) require(s >= 1, std::string(what) + ": every mode needs size >= 1");
  require(int64_t(a.data.size()) == product(a.shape),
          std::string(what) + ": data holds " + std::to_string(a.data.size()) + " values, the shape needs " +
              std::to_string(product(a.shape)));
  for (size_t i = 0; i < a.data.size(); ++i)
    if (!std::isfinite(double(a.data[i]))) throw Error(std::string(what) + ": non-finite value at flat index " + std::to_string(i));
}

// The leading r left singular vectors of an m x n matrix, m x r row-major.
template <class T>
std::vector<T> leading_left(std::vector<T> a, int64_t m, int64_t n, int64_t r) {
  const int64_t k = std::min(m, n);
  std::vector<T> s(static_cast<size_t>(k)), u(size_t(m * k)), vt(size_t(k * n));
  lowrank::gesdd(m, n, a.data(), s.data(), u.data(), vt.data());
  std::vector<T> out(size_t(m * r), T(0));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < std::min(r, k); ++j) out[size_t(i * r + j)] = u[size_t(i * k + j)];
  return out;
}

template <class T>
double norm2(const std::vector<T>& v) {
  double s = 0;
  for (T x : v) s += double(x) * double(x);
  return s;
}

}  // namespace

template <class T>
size_t DenseTensor<T>::size() const {
  return size_t(product(shape));
}

// ------------------------------------------------------------------------------ Tucker
template <class T>
DenseTensor<T> Tucker<T>::reconstruct() const {
  DenseTensor<T> x = core;
  for (size_t k = 0; k < factors.size(); ++k) {
    const int64_t nk = int64_t(factors[k].size()) / core.shape[k];
    x = mode_product(x, int(k), factors[k].data(), nk, false);
  }
  return x;
}

template <class T>
Tucker<T> tucker(const DenseTensor<T>& a, const std::vector<int64_t>& ranks, int max_iters, double tol) {
  const auto t0 = Clock::now();
  check_tensor("tucker", a);
  const int d = int(a.shape.size());
  require(int(ranks.size()) == d, "tucker: need one rank per mode (" + std::to_string(d) + "), got " + std::to_string(ranks.size()));
  for (int k = 0; k < d; ++k)
    require(ranks[size_t(k)] >= 1 && ranks[size_t(k)] <= a.shape[size_t(k)],
            "tucker: rank " + std::to_string(ranks[size_t(k)]) + " of mode " + std::to_string(k) + " must be 1 .. " +
                std::to_string(a.shape[size_t(k)]));
  Tucker<T> t;
  t.factors.resize(static_cast<size_t>(d));
  for (int k = 0; k < d; ++k)  // HOSVD
    t.factors[size_t(k)] = leading_left(unfold(a, k), a.shape[size_t(k)], int64_t(a.size()) / a.shape[size_t(k)], ranks[size_t(k)]);
  const double total = norm2(a.data);
  const auto project = [&] {  // core = A ×_k U_kᵀ; with orthonormal U_k, ‖A − Â‖² = ‖A‖² − ‖core‖²
    DenseTensor<T> g = a;
    for (int j = 0; j < d; ++j) g = mode_product(g, j, t.factors[size_t(j)].data(), ranks[size_t(j)], true);
    t.core = std::move(g);
    return total > 0 ? std::sqrt(std::max(0.0, total - norm2(t.core.data)) / total) : 0.0;
  };
  double err = project();
  int it = 0;
  for (; it < max_iters; ++it) {
    for (int k = 0; k < d; ++k) {  // HOOI: project on the other factors, refit this one
      DenseTensor<T> y = a;
      for (int j = 0; j < d; ++j)
        if (j != k) y = mode_product(y, j, t.factors[size_t(j)].data(), ranks[size_t(j)], true);
      t.factors[size_t(k)] = leading_left(unfold(y, k), a.shape[size_t(k)], int64_t(y.size()) / a.shape[size_t(k)], ranks[size_t(k)]);
    }
    const double e = project();
    const bool done = std::abs(err - e) < tol;
    err = e;
    if (done) break;
  }
  const auto x = t.reconstruct();
  int64_t params = int64_t(t.core.size());
  for (int k = 0; k < d; ++k) params += a.shape[size_t(k)] * ranks[size_t(k)];
  t.report = {"tucker", *std::max_element(ranks.begin(), ranks.end()), ranks,
              relative_error(a.data.data(), x.data.data(), a.size()), int64_t(a.size()), params, since(t0),
              std::min(it + 1, max_iters)};
  return t;
}

// ------------------------------------------------------------------------------ CP
template <class T>
DenseTensor<T> Cp<T>::reconstruct() const {
  DenseTensor<T> x;
  const int d = int(factors.size());
  for (int k = 0; k < d; ++k) x.shape.push_back(int64_t(factors[size_t(k)].size()) / rank);
  x.data.assign(x.size(), T(0));
  std::vector<int64_t> idx(static_cast<size_t>(d), 0);
  for (size_t o = 0; o < x.data.size(); ++o) {
    double v = 0;
    for (int64_t r = 0; r < rank; ++r) {
      double p = double(lambda[size_t(r)]);
      for (int k = 0; k < d; ++k) p *= double(factors[size_t(k)][size_t(idx[size_t(k)] * rank + r)]);
      v += p;
    }
    x.data[o] = T(v);
    for (int k = d - 1; k >= 0 && ++idx[size_t(k)] == x.shape[size_t(k)]; --k) idx[size_t(k)] = 0;
  }
  return x;
}

template <class T>
Cp<T> cp_als(const DenseTensor<T>& a, int64_t rank, int max_iters, double tol, uint64_t seed) {
  const auto t0 = Clock::now();
  check_tensor("cp", a);
  require(rank >= 1, "cp: rank must be >= 1");
  const int d = int(a.shape.size());
  Cp<T> cp;
  cp.rank = rank;
  cp.lambda.assign(size_t(rank), T(1));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g;
  for (int k = 0; k < d; ++k) {
    std::vector<T> f(size_t(a.shape[size_t(k)] * rank));
    for (auto& v : f) v = T(g(rng));
    cp.factors.push_back(std::move(f));
  }
  double err = INFINITY;
  int it = 0;
  std::vector<int64_t> idx(static_cast<size_t>(d));
  for (; it < max_iters; ++it) {
    for (int k = 0; k < d; ++k) {
      const int64_t nk = a.shape[size_t(k)];
      // V = ⊙_{j≠k} A_jᵀA_j (R x R), M = X_(k) · (Khatri-Rao of the others), computed element-wise.
      std::vector<double> v(size_t(rank * rank), 1.0), mt(size_t(nk * rank), 0.0);
      for (int j = 0; j < d; ++j) {
        if (j == k) continue;
        const auto& f = cp.factors[size_t(j)];
        for (int64_t p = 0; p < rank; ++p)
          for (int64_t q = 0; q < rank; ++q) {
            double s = 0;
            for (int64_t i = 0; i < a.shape[size_t(j)]; ++i) s += double(f[size_t(i * rank + p)]) * double(f[size_t(i * rank + q)]);
            v[size_t(p * rank + q)] *= s;
          }
      }
      std::fill(idx.begin(), idx.end(), 0);
      std::vector<double> prod(static_cast<size_t>(rank));
      for (size_t o = 0; o < a.data.size(); ++o) {
        std::fill(prod.begin(), prod.end(), double(a.data[o]));
        for (int j = 0; j < d; ++j) {
          if (j == k) continue;
          const T* row = cp.factors[size_t(j)].data() + idx[size_t(j)] * rank;
          for (int64_t r = 0; r < rank; ++r) prod[size_t(r)] *= double(row[r]);
        }
        double* m = mt.data() + idx[size_t(k)] * rank;
        for (int64_t r = 0; r < rank; ++r) m[r] += prod[size_t(r)];
        for (int j = d - 1; j >= 0 && ++idx[size_t(j)] == a.shape[size_t(j)]; --j) idx[size_t(j)] = 0;
      }
      // A_k = M · V⁺ (V symmetric: pseudo-inverse through its SVD).
      std::vector<double> vs(static_cast<size_t>(rank)), vu(size_t(rank * rank)), vvt(size_t(rank * rank));
      lowrank::gesdd(rank, rank, v.data(), vs.data(), vu.data(), vvt.data());
      std::vector<double> pinv(size_t(rank * rank), 0.0);
      for (int64_t p = 0; p < rank; ++p)
        for (int64_t q = 0; q < rank; ++q) {
          double s = 0;
          for (int64_t t = 0; t < rank; ++t)
            if (vs[size_t(t)] > vs[0] * 1e-13) s += vvt[size_t(t * rank + p)] * vu[size_t(q * rank + t)] / vs[size_t(t)];
          pinv[size_t(p * rank + q)] = s;
        }
      auto& f = cp.factors[size_t(k)];
      for (int64_t i = 0; i < nk; ++i)
        for (int64_t q = 0; q < rank; ++q) {
          double s = 0;
          for (int64_t p = 0; p < rank; ++p) s += mt[size_t(i * rank + p)] * pinv[size_t(p * rank + q)];
          f[size_t(i * rank + q)] = T(s);
        }
      for (int64_t r = 0; r < rank; ++r) {  // unit columns, the norm into λ
        double s = 0;
        for (int64_t i = 0; i < nk; ++i) s += double(f[size_t(i * rank + r)]) * double(f[size_t(i * rank + r)]);
        s = std::sqrt(s);
        cp.lambda[size_t(r)] = T(s);
        if (s > 0)
          for (int64_t i = 0; i < nk; ++i) f[size_t(i * rank + r)] = T(double(f[size_t(i * rank + r)]) / s);
      }
    }
    const auto x = cp.reconstruct();
    const double e = relative_error(a.data.data(), x.data.data(), a.size());
    const bool done = std::abs(err - e) < tol || e < tol;
    err = e;
    if (done) break;
  }
  int64_t params = rank;
  for (int64_t s : a.shape) params += s * rank;
  cp.report = {"cp", rank, {rank}, err, int64_t(a.size()), params, since(t0), std::min(it + 1, max_iters)};
  return cp;
}

// ------------------------------------------------------------------------------ tensor train
template <class T>
DenseTensor<T> TensorTrain<T>::reconstruct() const {
  // Left to right: R (prod n_0..n_k) x r_{k+1}.
  std::vector<T> r = cores[0];
  int64_t rows = shape[0];
  for (size_t k = 1; k < cores.size(); ++k) {
    const int64_t rk = ranks[k], cols = shape[k] * ranks[k + 1];
    std::vector<T> next(size_t(rows * cols));
    lowrank::gemm(false, false, rows, cols, rk, T(1), r.data(), rk, cores[k].data(), cols, T(0), next.data(), cols);
    r = std::move(next);
    rows *= shape[k];
  }
  DenseTensor<T> x;
  x.shape = shape;
  x.data = std::move(r);
  return x;
}

template <class T>
TensorTrain<T> tt_svd(const DenseTensor<T>& a, int64_t max_rank, double eps) {
  const auto t0 = Clock::now();
  check_tensor("tensor train", a);
  require(max_rank >= 0 && eps >= 0 && (max_rank > 0 || eps > 0), "tensor train: give max_rank >= 1 and/or eps > 0");
  const int d = int(a.shape.size());
  TensorTrain<T> tt;
  tt.shape = a.shape;
  tt.ranks.assign(size_t(d + 1), 1);
  const double delta2 = eps * eps * norm2(a.data) / double(d - 1);
  std::vector<T> c = a.data;
  int64_t cols = int64_t(a.size());
  for (int k = 0; k < d - 1; ++k) {
    const int64_t rows = tt.ranks[size_t(k)] * a.shape[size_t(k)];
    cols /= a.shape[size_t(k)];
    const int64_t kk = std::min(rows, cols);
    std::vector<T> s(static_cast<size_t>(kk)), u(size_t(rows * kk)), vt(size_t(kk * cols));
    lowrank::gesdd(rows, cols, c.data(), s.data(), u.data(), vt.data());
    int64_t r = kk;
    if (eps > 0) {  // drop the smallest values while their energy stays under δ²
      double tail = 0;
      while (r > 1 && tail + double(s[size_t(r - 1)]) * double(s[size_t(r - 1)]) <= delta2) {
        tail += double(s[size_t(r - 1)]) * double(s[size_t(r - 1)]);
        --r;
      }
    }
    if (max_rank > 0) r = std::min(r, max_rank);
    tt.ranks[size_t(k + 1)] = r;
    std::vector<T> core(size_t(rows * r));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < r; ++j) core[size_t(i * r + j)] = u[size_t(i * kk + j)];
    tt.cores.push_back(std::move(core));
    c.assign(size_t(r * cols), T(0));
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < cols; ++j) c[size_t(i * cols + j)] = s[size_t(i)] * vt[size_t(i * cols + j)];
  }
  tt.cores.push_back(std::move(c));
  const auto x = tt.reconstruct();
  int64_t params = 0;
  for (const auto& core : tt.cores) params += int64_t(core.size());
  tt.report = {"tt", *std::max_element(tt.ranks.begin(), tt.ranks.end()), tt.ranks,
               relative_error(a.data.data(), x.data.data(), a.size()), int64_t(a.size()), params, since(t0), 0};
  return tt;
}

namespace {
// (o_1..o_d, i_1..i_d) <-> (o_1, i_1, o_2, i_2, ...)
std::vector<int> interleave(int d) {
  std::vector<int> p;
  for (int k = 0; k < d; ++k) p.push_back(k), p.push_back(d + k);
  return p;
}
void check_modes(const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes) {
  require(!out_modes.empty() && out_modes.size() == in_modes.size() && out_modes.size() <= 6,
          "mpo: need as many output as input modes (1 to 6)");
  for (int64_t v : out_modes) require(v >= 1, "mpo: mode sizes must be >= 1");
  for (int64_t v : in_modes) require(v >= 1, "mpo: mode sizes must be >= 1");
}
}  // namespace

template <class T>
TensorTrain<T> mpo_from_matrix(const T* w, const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes,
                               int64_t max_rank, double eps) {
  check_modes(out_modes, in_modes);
  require(w != nullptr, "mpo: null matrix");
  const int d = int(out_modes.size());
  DenseTensor<T> t;
  t.shape = out_modes;
  t.shape.insert(t.shape.end(), in_modes.begin(), in_modes.end());
  t.data.assign(w, w + product(out_modes) * product(in_modes));
  if (d == 1) {
    t.shape = {out_modes[0] * in_modes[0], 1};
    return tt_svd(t, max_rank, eps);
  }
  DenseTensor<T> p = permute(t, interleave(d));
  DenseTensor<T> m;
  for (int k = 0; k < d; ++k) m.shape.push_back(out_modes[size_t(k)] * in_modes[size_t(k)]);
  m.data = std::move(p.data);
  auto tt = tt_svd(m, max_rank, eps);
  tt.report.method = "mpo";
  return tt;
}

template <class T>
std::vector<T> mpo_to_matrix(const TensorTrain<T>& tt, const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes) {
  check_modes(out_modes, in_modes);
  const int d = int(out_modes.size());
  DenseTensor<T> x = tt.reconstruct();
  if (d == 1) return x.data;
  DenseTensor<T> p;
  for (int k = 0; k < d; ++k) p.shape.push_back(out_modes[size_t(k)]), p.shape.push_back(in_modes[size_t(k)]);
  p.data = std::move(x.data);
  return permute(p, inverse(interleave(d))).data;
}

#define TZ_TENSOR_INSTANTIATE(T)                                                                                   \
  template DenseTensor<T> lowrank::permute<T>(const DenseTensor<T>&, const std::vector<int>&);                      \
  template DenseTensor<T> lowrank::mode_product<T>(const DenseTensor<T>&, int, const T*, int64_t, bool);            \
  template struct DenseTensor<T>;                                                                                  \
  template struct Tucker<T>;                                                                                       \
  template struct Cp<T>;                                                                                           \
  template struct TensorTrain<T>;                                                                                  \
  template Tucker<T> tucker<T>(const DenseTensor<T>&, const std::vector<int64_t>&, int, double);                   \
  template Cp<T> cp_als<T>(const DenseTensor<T>&, int64_t, int, double, uint64_t);                                 \
  template TensorTrain<T> tt_svd<T>(const DenseTensor<T>&, int64_t, double);                                       \
  template TensorTrain<T> mpo_from_matrix<T>(const T*, const std::vector<int64_t>&, const std::vector<int64_t>&,   \
                                             int64_t, double);                                                     \
  template std::vector<T> mpo_to_matrix<T>(const TensorTrain<T>&, const std::vector<int64_t>&, const std::vector<int64_t>&);
TZ_TENSOR_INSTANTIATE(float)
TZ_TENSOR_INSTANTIATE(double)

}  // namespace tz
