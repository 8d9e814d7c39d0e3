// Truncated, randomized and weighted SVD (see tensorzip/decompose.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <type_traits>

#include "lowrank/lapack.h"
#include "tensorzip/convert.h"
#include "tensorzip/decompose.h"
#include "tensorzip/gemm.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace lowrank {

namespace {
// Atomic: with an override in place, pool threads calling BLAS read these concurrently.
std::atomic<int> blas_threads_current{0}, blas_thread_override{0};
}  // namespace

void sync_blas_threads() {
  // Inputs are checked for non-finite values before any LAPACK call; LAPACKE's own NaN scan of
  // every argument matrix would be a second pass.
  static const bool nancheck_off = (LAPACKE_set_nancheck(0), true);
  (void)nancheck_off;
  const int o = blas_thread_override.load();
  const int n = o > 0 ? o : num_threads();
  if (blas_threads_current != n) {
    openblas_set_num_threads(n);
    blas_threads_current = n;
  }
}

ScopedBlasThreads::ScopedBlasThreads(int n) : saved_(blas_thread_override) {
  blas_thread_override = n;
  sync_blas_threads();
}
ScopedBlasThreads::~ScopedBlasThreads() {
  blas_thread_override = saved_;
  sync_blas_threads();
}

}  // namespace lowrank

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One vectorizable pass over the exponent bits (all ones: Inf or NaN).
template <class T>
bool all_finite(const T* p, size_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits kExp = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  Bits bad = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, p + i, sizeof(T));
    bad |= Bits((b & kExp) == kExp);
  }
  return bad == 0;
}

template <class T>
void check_matrix(const char* what, const T* a, int64_t m, int64_t n) {
  require(a != nullptr && m >= 1 && n >= 1,
          std::string(what) + ": need a non-empty matrix, got " + std::to_string(m) + " x " + std::to_string(n));
  if (all_finite(a, size_t(m * n))) return;
  for (int64_t i = 0; i < m * n; ++i)
    if (!std::isfinite(double(a[i])))
      throw Error(std::string(what) + ": non-finite value at (" + std::to_string(i / n) + ", " + std::to_string(i % n) + ")");
}

// Standard normal samples from a seed: splitmix64 + Box–Muller (the test matrix of the range
// finder: any decent Gaussian will do, and std::normal_distribution cost more than a power iteration).
template <class T>
void gaussian_fill(T* out, size_t n, uint64_t seed) {
  // Counter-based (splitmix64 of seed + j·γ for draw j), so chunks fill in parallel and the values
  // do not depend on the thread count. Box–Muller: draws 2i, 2i+1 give values i, i+1.
  const size_t pairs = (n + 1) / 2, chunks = std::min<size_t>(64, std::max<size_t>(1, pairs / 4096));
  parallel_for(int64_t(chunks), [&](int64_t c, int) {
    const Range rg = split_range(int64_t(pairs), int64_t(chunks), c);
    uint64_t state = seed + uint64_t(2 * rg.begin) * 0x9e3779b97f4a7c15ull;
    const auto next = [&] {
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    for (int64_t p = rg.begin; p < rg.end; ++p) {
      const size_t i = size_t(2 * p);
      // In T's precision: float's log/sin/cos are 3x faster and the test matrix needs no more.
      const T u1 = T((double(next() >> 11) + 1.0) * 0x1.0p-53), u2 = T(double(next() >> 11) * 0x1.0p-53);
      const T r = std::sqrt(T(-2) * std::log(u1)), t = T(2 * M_PI) * u2;
      out[i] = r * std::cos(t);
      if (i + 1 < n) out[i + 1] = r * std::sin(t);
    }
  });
}

// The rank a spec asks for, given the singular values when they are known.
template <class T>
int64_t choose_rank(const char* what, const RankSpec& spec, int64_t m, int64_t n, const std::vector<T>* spectrum) {
  const int64_t kmax = std::min(m, n);
  const int set = (spec.rank > 0) + (spec.energy > 0) + (spec.param_ratio > 0);
  require(set == 1, std::string(what) + ": give exactly one of rank, energy, param_ratio");
  if (spec.rank > 0) {
    require(spec.rank <= kmax, std::string(what) + ": rank " + std::to_string(spec.rank) + " exceeds min(m, n) = " +
                                   std::to_string(kmax));
    return spec.rank;
  }
  if (spec.param_ratio > 0) {
    require(spec.param_ratio <= 1, std::string(what) + ": param_ratio must be in (0, 1]");
    const int64_t r = int64_t(std::floor(spec.param_ratio * double(m) * double(n) / double(m + n)));
    return std::clamp<int64_t>(r, 1, kmax);
  }
  require(spec.energy <= 1, std::string(what) + ": energy must be in (0, 1]");
  require(spectrum != nullptr, std::string(what) + ": an energy threshold needs the full spectrum (use svd_truncated)");
  double total = 0;
  for (T s : *spectrum) total += double(s) * double(s);
  double kept = 0;
  for (int64_t r = 0; r < int64_t(spectrum->size()); ++r) {
    kept += double((*spectrum)[size_t(r)]) * double((*spectrum)[size_t(r)]);
    if (kept >= spec.energy * total * (1 - 1e-12)) return r + 1;
  }
  return int64_t(spectrum->size());
}

// Keep the leading r of a thin SVD with k = min(m, n) columns.
template <class T>
void truncate(Svd<T>& out, const std::vector<T>& u, const std::vector<T>& s, const std::vector<T>& vt, int64_t k, int64_t r) {
  out.rank = r;
  out.u.resize(size_t(out.m * r));
  for (int64_t i = 0; i < out.m; ++i)
    for (int64_t j = 0; j < r; ++j) out.u[size_t(i * r + j)] = u[size_t(i * k + j)];
  out.s.assign(s.begin(), s.begin() + r);
  out.vt.assign(vt.begin(), vt.begin() + r * out.n);
}

}  // namespace

template <class T>
std::vector<T> Svd<T>::reconstruct() const {
  std::vector<T> us(u), out(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < rank; ++j) us[size_t(i * rank + j)] *= s[size_t(j)];
  if (rank > 0) lowrank::gemm(false, false, m, n, rank, T(1), us.data(), rank, vt.data(), n, T(0), out.data(), n);
  return out;
}

template <class T>
double relative_error(const T* a, const T* ahat, size_t count) {
  double num = 0, den = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = double(a[i]) - double(ahat[i]);
    num += d * d;
    den += double(a[i]) * double(a[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

template <class T>
Svd<T> svd_truncated(const T* a, int64_t m, int64_t n, const RankSpec& spec) {
  const auto t0 = Clock::now();
  check_matrix("svd", a, m, n);
  if (spec.rank > 0) choose_rank<T>("svd", spec, m, n, nullptr);  // validate before the work
  const int64_t k = std::min(m, n);
  std::vector<T> work(a, a + m * n), s(static_cast<size_t>(k)), u(size_t(m * k)), vt(size_t(k * n));
  lowrank::gesdd(m, n, work.data(), s.data(), u.data(), vt.data());
  Svd<T> out;
  out.m = m;
  out.n = n;
  out.spectrum = s;
  const int64_t r = choose_rank<T>("svd", spec, m, n, &s);
  truncate(out, u, s, vt, k, r);
  double total = 0, tail = 0;
  for (int64_t i = 0; i < k; ++i) {
    total += double(s[size_t(i)]) * double(s[size_t(i)]);
    if (i >= r) tail += double(s[size_t(i)]) * double(s[size_t(i)]);
  }
  out.report = {"svd", r, {r}, total > 0 ? std::sqrt(tail / total) : 0.0, m * n, r * (m + n + 1), since(t0), 0};
  return out;
}

// Thin SVD of a short wide b (l x n, l ≤ n, l small: the projection of a randomized SVD) through
// its Gram matrix in double: G = b·bᵀ = U Λ Uᵀ, σ = √λ, Vᵀ = Σ⁻¹ Uᵀ b. LAPACK's gesdd on the wide
// matrix starts with an LQ factorization that is BLAS-2 bound (slower on two threads than one);
// this is two small GEMMs and a 74 x 74 eigenproblem. Directions with σ < 1e-7·σ_max (beyond what
// double resolves through σ²) get a zero row in Vᵀ.
template <class T>
void wide_svd(int64_t l, int64_t n, const T* b, T* s, T* u, T* vt) {
  if (l > 512 || l > n) {
    std::vector<T> work(b, b + l * n);
    lowrank::gesdd(l, n, work.data(), s, u, vt);
    return;
  }
  std::vector<double> bd(b, b + l * n), g(size_t(l * l)), lam(static_cast<size_t>(l)), v(size_t(l * n));
  lowrank::gemm(false, true, l, l, n, 1.0, bd.data(), n, bd.data(), n, 0.0, g.data(), l);
  lowrank::syevd(l, g.data(), lam.data(), "randomized svd (projected Gram matrix)");
  // Eigenvalues ascending: column l-1-j of g is the j-th singular direction.
  std::vector<double> ut(size_t(l * l));
  for (int64_t j = 0; j < l; ++j)
    for (int64_t i = 0; i < l; ++i) ut[size_t(j * l + i)] = g[size_t(i * l + (l - 1 - j))];
  lowrank::gemm(false, false, l, n, l, 1.0, ut.data(), l, bd.data(), n, 0.0, v.data(), n);
  const double smax = std::sqrt(std::max(lam[size_t(l - 1)], 0.0));
  for (int64_t j = 0; j < l; ++j) {
    const double sj = std::sqrt(std::max(lam[size_t(l - 1 - j)], 0.0));
    s[j] = T(sj);
    const double inv = sj > 1e-7 * smax && sj > 0 ? 1.0 / sj : 0.0;
    for (int64_t c = 0; c < n; ++c) vt[j * n + c] = T(v[size_t(j * n + c)] * inv);
    for (int64_t i = 0; i < l; ++i) u[i * l + j] = T(ut[size_t(j * l + i)]);
  }
}

// The rest of a randomized SVD once the basis Q of the range is known: B = QᵀA (l x n, fp32),
// its SVD, U = Q·U_B. q is Q [m, l] row-major, or Qᵀ [l, m] when q_transposed.
template <class T>
Svd<T> from_range_basis(const T* a, int64_t m, int64_t n, int64_t r, int64_t l, const T* q, bool q_transposed,
                        const char* method, const RandomizedSvdOptions& opt, Clock::time_point t0,
                        const PackedBf16Weights* at_bf16 = nullptr) {
  std::vector<T> b(size_t(l * n)), sb(static_cast<size_t>(l)), ub(size_t(l * l)), vtb(size_t(l * n)), u(size_t(m * l));
  const int64_t ldq = q_transposed ? m : l;
  if constexpr (std::is_same_v<T, float>) {
    if (at_bf16 != nullptr && q_transposed) {
      // B = Qᵀ·A on the bf16 tiles of Aᵀ already packed for the range finder (X·Wᵀ with W = Aᵀ).
      std::vector<uint16_t> qb(size_t(l * m));
      f32_to_bf16(q, qb.data(), qb.size());
      gemm_bf16(l, qb.data(), m, *at_bf16, b.data(), n);
    }
  }
  if (at_bf16 == nullptr || !q_transposed) lowrank::gemm(!q_transposed, false, l, n, m, T(1), q, ldq, a, n, T(0), b.data(), n);
  wide_svd(l, n, b.data(), sb.data(), ub.data(), vtb.data());
  lowrank::gemm(q_transposed, false, m, l, l, T(1), q, ldq, ub.data(), l, T(0), u.data(), l);
  Svd<T> out;
  out.m = m;
  out.n = n;
  out.spectrum = sb;
  truncate(out, u, sb, vtb, l, r);
  const double err = opt.report_error ? relative_error(a, out.reconstruct().data(), size_t(m * n)) : NAN;
  out.report = {method, r, {r}, err, m * n, r * (m + n + 1), since(t0), opt.power_iters};
  return out;
}

// The range finder in bf16 on transposed panels (Yᵀ [l, m], Zᵀ [l, n] row-major = Y, Z
// column-major), so every product has the bf16 GEMM's X·Wᵀ form with W = A or Aᵀ, packed once.
Svd<float> svd_randomized_bf16(const float* a, int64_t m, int64_t n, int64_t r, int64_t l, const std::vector<float>& omega,
                               const RandomizedSvdOptions& opt, Clock::time_point t0) {
  std::vector<uint16_t> pb(size_t(l * std::max(m, n)));
  const PackedBf16Weights wa = pack_bf16_weights_f32(a, m, n, n);          // Yᵀ = Zᵀ·Aᵀ: W = A [m, n]
  const PackedBf16Weights wat = pack_bf16_weights_f32(a, n, m, n, true);   // Zᵀ = Yᵀ·A:  W = Aᵀ [n, m]
  std::vector<float> yt(size_t(l * m)), zt(size_t(l * n));
  // The test matrix only has to be Gaussian: its buffer, read as Ωᵀ [l, n], is one (a transposing
  // copy with a 16 KB stride cost 12 ms, as much as two of the GEMMs).
  f32_to_bf16(omega.data(), pb.data(), omega.size());
  gemm_bf16(l, pb.data(), n, wa, yt.data(), m);  // Yᵀ = Ωᵀ Aᵀ
  if (!all_finite(yt.data(), yt.size())) check_matrix("randomized svd", a, m, n);  // see svd_randomized
  for (int it = 0; it < opt.power_iters; ++it) {
    // One LU normalization per power iteration: within an iteration the columns' spread grows by
    // at most (σ₁/σ_l)², well inside f32 and bf16's range.
    lowrank::lu_basis_colmajor(m, l, yt.data());
    f32_to_bf16(yt.data(), pb.data(), yt.size());
    gemm_bf16(l, pb.data(), m, wat, zt.data(), n);  // Zᵀ = Yᵀ A
    f32_to_bf16(zt.data(), pb.data(), zt.size());
    gemm_bf16(l, pb.data(), n, wa, yt.data(), m);  // Yᵀ = Zᵀ Aᵀ
  }
  lowrank::qr_colmajor(m, l, yt.data());  // Qᵀ [l, m]
  return from_range_basis(a, m, n, r, l, yt.data(), true, "rsvd_bf16_range", opt, t0, &wat);
}

template <class T>
Svd<T> svd_randomized(const T* a, int64_t m, int64_t n, const RankSpec& spec, const RandomizedSvdOptions& opt) {
  const auto t0 = Clock::now();
  // A non-finite value anywhere in A makes its whole row of the first product Y = AΩ non-finite, so
  // the input is checked through Y (m·l values instead of m·n); check_matrix then locates it.
  require(a != nullptr && m >= 1 && n >= 1,
          "randomized svd: need a non-empty matrix, got " + std::to_string(m) + " x " + std::to_string(n));
  require(opt.oversample >= 0 && opt.power_iters >= 0, "randomized svd: oversample and power_iters must be >= 0");
  const int64_t r = choose_rank<T>("randomized svd", spec, m, n, nullptr);
  const int64_t l = std::min(std::min(m, n), r + opt.oversample);
  // Range finder: Y = A Ω, then (A Aᵀ)^q Y with re-orthonormalization between the products.
  std::vector<T> omega(size_t(n * l)), y(size_t(m * l)), z(size_t(n * l));
  gaussian_fill(omega.data(), omega.size(), opt.seed);
  if constexpr (std::is_same_v<T, float>) {
    if (opt.bf16_range) return svd_randomized_bf16(a, m, n, r, l, omega, opt, t0);
  }
  lowrank::gemm(false, false, m, l, n, T(1), a, n, omega.data(), l, T(0), y.data(), l);
  if (!all_finite(y.data(), y.size())) check_matrix("randomized svd", a, m, n);
  for (int it = 0; it < opt.power_iters; ++it) {  // LU-normalized between products (fbpca), QR at the end
    lowrank::lu_basis(m, l, y.data());
    lowrank::gemm(true, false, n, l, m, T(1), a, n, y.data(), l, T(0), z.data(), l);  // Z = Aᵀ Y
    lowrank::lu_basis(n, l, z.data());
    lowrank::gemm(false, false, m, l, n, T(1), a, n, z.data(), l, T(0), y.data(), l);  // Y = A Z
  }
  lowrank::orthonormalize(m, l, y.data());  // Q
  return from_range_basis(a, m, n, r, l, y.data(), false, "rsvd", opt, t0);
}

template <class T>
Svd<T> svd_weighted(const T* a, int64_t m, int64_t n, const T* row_w, const T* col_w, const RankSpec& spec) {
  const auto t0 = Clock::now();
  check_matrix("weighted svd", a, m, n);
  const auto check_w = [](const char* what, const T* w, int64_t len) {
    if (w == nullptr) return;
    for (int64_t i = 0; i < len; ++i)
      require(std::isfinite(double(w[i])) && w[i] > 0,
              std::string("weighted svd: ") + what + " weight " + std::to_string(i) + " must be finite and > 0");
  };
  check_w("row", row_w, m);
  check_w("column", col_w, n);
  std::vector<T> scaled(a, a + m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      scaled[size_t(i * n + j)] *= (row_w ? row_w[i] : T(1)) * (col_w ? col_w[j] : T(1));
  Svd<T> out = svd_truncated(scaled.data(), m, n, spec);
  // Â = diag(1/row_w) U S Vt diag(1/col_w).
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < out.rank; ++j) out.u[size_t(i * out.rank + j)] /= row_w ? row_w[i] : T(1);
  for (int64_t i = 0; i < out.rank; ++i)
    for (int64_t j = 0; j < n; ++j) out.vt[size_t(i * n + j)] /= col_w ? col_w[j] : T(1);
  out.report.method = "weighted_svd";
  out.report.seconds = since(t0);
  return out;
}

std::vector<float> activation_col_weights(const float* x, int64_t tokens, int64_t n) {
  check_matrix("activation weights", x, tokens, n);
  std::vector<double> acc(static_cast<size_t>(n), 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < n; ++j) acc[size_t(j)] += double(x[t * n + j]) * double(x[t * n + j]);
  double mx = 0;
  for (double& v : acc) mx = std::max(mx, v = std::sqrt(v / double(tokens)));
  require(mx > 0, "activation weights: all activations are zero");
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) w[size_t(j)] = float(std::max(acc[size_t(j)], 1e-6 * mx));
  return w;
}

#define TZ_SVD_INSTANTIATE(T)                                                                              \
  template struct Svd<T>;                                                                                  \
  template double relative_error<T>(const T*, const T*, size_t);                                           \
  template Svd<T> svd_truncated<T>(const T*, int64_t, int64_t, const RankSpec&);                           \
  template Svd<T> svd_randomized<T>(const T*, int64_t, int64_t, const RankSpec&, const RandomizedSvdOptions&); \
  template Svd<T> svd_weighted<T>(const T*, int64_t, int64_t, const T*, const T*, const RankSpec&);
TZ_SVD_INSTANTIATE(float)
TZ_SVD_INSTANTIATE(double)

}  // namespace tz
