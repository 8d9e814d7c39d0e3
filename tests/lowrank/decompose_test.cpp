// Decompositions: planted structures are recovered (relative error <= 1e-5 in f64, <= 1e-4 in
// f32), truncated SVD matches LAPACK's singular values, randomized SVD is within 1 % of the
// optimal rank-r error on decaying spectra, weighted SVD minimizes the weighted error, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensorzip/decompose.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

template <class T>
std::vector<T> gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g;
  std::vector<T> v(n);
  for (auto& x : v) x = T(g(rng));
  return v;
}

// m x n of exact rank r: (m x r Gaussian) · (r x n Gaussian).
template <class T>
std::vector<T> planted_rank(int64_t m, int64_t n, int64_t r, uint64_t seed) {
  const auto a = gaussian<double>(size_t(m * r), seed), b = gaussian<double>(size_t(r * n), seed + 1);
  std::vector<T> out(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < r; ++k) s += a[size_t(i * r + k)] * b[size_t(k * n + j)];
      out[size_t(i * n + j)] = T(s);
    }
  return out;
}

// Q (m x k) with orthonormal columns, by Gram-Schmidt on a Gaussian matrix.
std::vector<double> orthonormal(int64_t m, int64_t k, uint64_t seed) {
  auto q = gaussian<double>(size_t(m * k), seed);
  for (int64_t j = 0; j < k; ++j) {
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < m; ++i) d += q[size_t(i * k + j)] * q[size_t(i * k + p)];
        for (int64_t i = 0; i < m; ++i) q[size_t(i * k + j)] -= d * q[size_t(i * k + p)];
      }
    double nrm = 0;
    for (int64_t i = 0; i < m; ++i) nrm += q[size_t(i * k + j)] * q[size_t(i * k + j)];
    for (int64_t i = 0; i < m; ++i) q[size_t(i * k + j)] /= std::sqrt(nrm);
  }
  return q;
}

// U diag(σ) Vᵀ with the given spectrum.
template <class T>
std::vector<T> with_spectrum(int64_t m, int64_t n, const std::vector<double>& sigma, uint64_t seed) {
  const int64_t k = int64_t(sigma.size());
  const auto u = orthonormal(m, k, seed), v = orthonormal(n, k, seed + 7);
  std::vector<T> a(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += u[size_t(i * k + t)] * sigma[size_t(t)] * v[size_t(j * k + t)];
      a[size_t(i * n + j)] = T(s);
    }
  return a;
}

}  // namespace

TEST(Svd, PlantedRankRecovered) {
  set_num_threads(2);
  for (auto [m, n, r] : {std::tuple{60, 45, 5}, {33, 70, 7}, {1, 9, 1}, {64, 64, 64}}) {
    const auto ad = planted_rank<double>(m, n, r, uint64_t(m * n));
    const auto sd = svd_truncated(ad.data(), m, n, RankSpec::of_rank(r));
    EXPECT_LE(relative_error(ad.data(), sd.reconstruct().data(), ad.size()), 1e-12);
    EXPECT_LE(sd.report.rel_error, 1e-12);
    const auto af = planted_rank<float>(m, n, r, uint64_t(m * n));
    const auto sf = svd_truncated(af.data(), m, n, RankSpec::of_rank(r));
    EXPECT_LE(relative_error(af.data(), sf.reconstruct().data(), af.size()), 1e-5);
    EXPECT_EQ(sf.report.params_before, m * n);
    EXPECT_EQ(sf.report.params_after, r * (m + n + 1));
  }
}

TEST(Svd, SingularValuesAreTheSpectrum) {
  std::vector<double> sigma;
  for (int i = 0; i < 20; ++i) sigma.push_back(10.0 / (1 + i));
  const auto a = with_spectrum<double>(50, 30, sigma, 3);
  const auto s = svd_truncated(a.data(), 50, 30, RankSpec::of_rank(20));
  ASSERT_EQ(s.spectrum.size(), 30u);
  for (int i = 0; i < 20; ++i) EXPECT_NEAR(s.spectrum[size_t(i)], sigma[size_t(i)], 1e-12 * sigma[0]);
  for (int i = 20; i < 30; ++i) EXPECT_LE(s.spectrum[size_t(i)], 1e-12 * sigma[0]);
}

TEST(Svd, RankSelection) {
  std::vector<double> sigma{4, 2, 1, 0.5};
  const auto a = with_spectrum<double>(40, 20, sigma, 5);
  // Σσ² = 21.25: 16/21.25 = 0.753, 20/21.25 = 0.941, 21/21.25 = 0.988.
  EXPECT_EQ(svd_truncated(a.data(), 40, 20, RankSpec::of_energy(0.75)).rank, 1);
  EXPECT_EQ(svd_truncated(a.data(), 40, 20, RankSpec::of_energy(0.9)).rank, 2);
  EXPECT_EQ(svd_truncated(a.data(), 40, 20, RankSpec::of_energy(0.98)).rank, 3);
  EXPECT_EQ(svd_truncated(a.data(), 40, 20, RankSpec::of_energy(1.0)).rank, 4);
  // (40 + 20)·r <= 0.25·800 = 200  ->  r = 3.
  EXPECT_EQ(svd_truncated(a.data(), 40, 20, RankSpec::of_param_ratio(0.25)).rank, 3);
  const auto s = svd_truncated(a.data(), 40, 20, RankSpec::of_rank(2));
  EXPECT_NEAR(s.report.rel_error, std::sqrt(1.25 / 21.25), 1e-12);
}

TEST(Svd, RandomizedWithinOnePercentOfOptimal) {
  set_num_threads(2);
  const int64_t m = 300, n = 200, r = 20;
  for (double decay : {0.9, 0.97}) {
    std::vector<double> sigma;
    for (int i = 0; i < 200; ++i) sigma.push_back(std::pow(decay, i));
    const auto a = with_spectrum<float>(m, n, sigma, uint64_t(decay * 100));
    double tail = 0, total = 0;
    for (size_t i = 0; i < sigma.size(); ++i) total += sigma[i] * sigma[i], tail += i >= size_t(r) ? sigma[i] * sigma[i] : 0;
    const double optimal = std::sqrt(tail / total);
    const auto s = svd_randomized(a.data(), m, n, RankSpec::of_rank(r));
    EXPECT_EQ(s.rank, r);
    EXPECT_LE(s.report.rel_error, optimal * 1.01) << "decay " << decay << " optimal " << optimal;
    EXPECT_NEAR(s.report.rel_error, relative_error(a.data(), s.reconstruct().data(), a.size()), 1e-9);
    RandomizedSvdOptions mixed;
    mixed.bf16_range = true;  // bf16 range finder, fp32 projection
    const auto sb = svd_randomized(a.data(), m, n, RankSpec::of_rank(r), mixed);
    EXPECT_LE(sb.report.rel_error, optimal * 1.01) << "bf16 range, decay " << decay << " optimal " << optimal;
    EXPECT_NEAR(sb.report.rel_error, relative_error(a.data(), sb.reconstruct().data(), a.size()), 1e-9);
  }
  // Exact on a planted rank with any oversampling.
  const auto p = planted_rank<double>(80, 90, 6, 11);
  EXPECT_LE(svd_randomized(p.data(), 80, 90, RankSpec::of_rank(6), {0, 1, 3}).report.rel_error, 1e-10);
}

TEST(Svd, WeightedMinimizesWeightedError) {
  const int64_t m = 40, n = 30, r = 5;
  const auto a = gaussian<double>(size_t(m * n), 21);
  std::vector<double> cw(static_cast<size_t>(n)), rw(static_cast<size_t>(m));
  for (int64_t j = 0; j < n; ++j) cw[size_t(j)] = j < 5 ? 20.0 : 1.0;  // five dominant input channels
  for (int64_t i = 0; i < m; ++i) rw[size_t(i)] = 1.0 + 0.1 * double(i % 3);
  const auto weighted_err = [&](const std::vector<double>& ahat) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double w = rw[size_t(i)] * cw[size_t(j)], d = (a[size_t(i * n + j)] - ahat[size_t(i * n + j)]) * w;
        num += d * d;
        den += a[size_t(i * n + j)] * w * a[size_t(i * n + j)] * w;
      }
    return std::sqrt(num / den);
  };
  const auto w = svd_weighted(a.data(), m, n, rw.data(), cw.data(), RankSpec::of_rank(r));
  const auto plain = svd_truncated(a.data(), m, n, RankSpec::of_rank(r));
  EXPECT_NEAR(weighted_err(w.reconstruct()), w.report.rel_error, 1e-10);
  EXPECT_LT(weighted_err(w.reconstruct()), 0.7 * weighted_err(plain.reconstruct()));
  // Activation statistics: channel scale = RMS of the activations.
  std::vector<float> x(size_t(100 * 4));
  for (int t = 0; t < 100; ++t)
    for (int j = 0; j < 4; ++j) x[size_t(t * 4 + j)] = float((t % 2 ? 1 : -1) * (j + 1));
  const auto aw = activation_col_weights(x.data(), 100, 4);
  for (int j = 0; j < 4; ++j) EXPECT_FLOAT_EQ(aw[size_t(j)], float(j + 1));
}

TEST(Svd, BadInput) {
  const std::vector<float> a(12, 1.f);
  EXPECT_THROW(svd_truncated(a.data(), 3, 4, RankSpec::of_rank(4)), Error);  // rank > min(m, n)
  EXPECT_THROW(svd_truncated(a.data(), 3, 4, RankSpec{}), Error);            // nothing set
  EXPECT_THROW(svd_truncated(a.data(), 3, 4, RankSpec{2, 0.5, 0}), Error);   // two set
  EXPECT_THROW(svd_randomized(a.data(), 3, 4, RankSpec::of_energy(0.9)), Error);
  auto bad = a;
  bad[5] = NAN;
  try {
    svd_truncated(bad.data(), 3, 4, RankSpec::of_rank(1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(1, 1)"), std::string::npos) << e.what();
  }
  for (bool bf16 : {false, true}) {  // the randomized SVD finds it through its first product
    RandomizedSvdOptions o;
    o.bf16_range = bf16;
    try {
      svd_randomized(bad.data(), 3, 4, RankSpec::of_rank(1), o);
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("(1, 1)"), std::string::npos) << e.what();
    }
  }
  const std::vector<float> w{1, 0, 1};
  EXPECT_THROW(svd_weighted(a.data(), 3, 4, w.data(), static_cast<const float*>(nullptr), RankSpec::of_rank(1)), Error);
}

// ------------------------------------------------------------------------------ tensors
namespace {
// A planted Tucker tensor: random core (ranks) times random factors.
template <class T>
DenseTensor<T> planted_tucker(const std::vector<int64_t>& shape, const std::vector<int64_t>& ranks, uint64_t seed) {
  const int d = int(shape.size());
  std::vector<std::vector<double>> f;
  for (int k = 0; k < d; ++k) f.push_back(gaussian<double>(size_t(shape[size_t(k)] * ranks[size_t(k)]), seed + uint64_t(k)));
  int64_t csize = 1, size = 1;
  for (int k = 0; k < d; ++k) csize *= ranks[size_t(k)], size *= shape[size_t(k)];
  const auto core = gaussian<double>(size_t(csize), seed + 99);
  DenseTensor<T> t;
  t.shape = shape;
  t.data.resize(size_t(size));
  std::vector<int64_t> idx(static_cast<size_t>(d), 0);
  for (int64_t o = 0; o < size; ++o) {
    double v = 0;
    std::vector<int64_t> c(static_cast<size_t>(d), 0);
    for (int64_t ci = 0; ci < csize; ++ci) {
      double p = core[size_t(ci)];
      for (int k = 0; k < d; ++k) p *= f[size_t(k)][size_t(idx[size_t(k)] * ranks[size_t(k)] + c[size_t(k)])];
      v += p;
      for (int k = d - 1; k >= 0 && ++c[size_t(k)] == ranks[size_t(k)]; --k) c[size_t(k)] = 0;
    }
    t.data[size_t(o)] = T(v);
    for (int k = d - 1; k >= 0 && ++idx[size_t(k)] == shape[size_t(k)]; --k) idx[size_t(k)] = 0;
  }
  return t;
}
template <class T>
DenseTensor<T> planted_cp(const std::vector<int64_t>& shape, int64_t rank, uint64_t seed) {
  std::vector<int64_t> ranks(shape.size(), rank);
  // A superdiagonal core makes the Tucker tensor a CP tensor.
  const int d = int(shape.size());
  std::vector<std::vector<double>> f;
  for (int k = 0; k < d; ++k) f.push_back(gaussian<double>(size_t(shape[size_t(k)] * rank), seed + uint64_t(k)));
  DenseTensor<T> t;
  t.shape = shape;
  int64_t size = 1;
  for (int64_t s : shape) size *= s;
  t.data.resize(size_t(size));
  std::vector<int64_t> idx(static_cast<size_t>(d), 0);
  for (int64_t o = 0; o < size; ++o) {
    double v = 0;
    for (int64_t r = 0; r < rank; ++r) {
      double p = 1.0 + double(r);
      for (int k = 0; k < d; ++k) p *= f[size_t(k)][size_t(idx[size_t(k)] * rank + r)];
      v += p;
    }
    t.data[size_t(o)] = T(v);
    for (int k = d - 1; k >= 0 && ++idx[size_t(k)] == shape[size_t(k)]; --k) idx[size_t(k)] = 0;
  }
  return t;
}
}  // namespace

TEST(Tensor, TuckerRecoversPlantedRanks) {
  for (auto [shape, ranks] : {std::pair<std::vector<int64_t>, std::vector<int64_t>>{{10, 12, 9}, {3, 4, 2}},
                              {{6, 5, 4, 7}, {2, 3, 2, 3}},
                              {{4, 3, 3, 2, 3, 2}, {2, 2, 1, 2, 2, 1}}}) {
    const auto a = planted_tucker<double>(shape, ranks, 31);
    const auto t = tucker(a, ranks);
    EXPECT_LE(t.report.rel_error, 1e-10);
    const auto af = planted_tucker<float>(shape, ranks, 31);
    EXPECT_LE(tucker(af, ranks).report.rel_error, 1e-5);
    EXPECT_LT(t.report.params_after, t.report.params_before);
  }
  // Truncating below the planted rank leaves an error; HOOI never does worse than its HOSVD start.
  const auto a = planted_tucker<double>({10, 12, 9}, {4, 4, 4}, 5);
  const auto t1 = tucker(a, {2, 2, 2}, 0), t2 = tucker(a, {2, 2, 2}, 30);
  EXPECT_GT(t2.report.rel_error, 1e-3);
  EXPECT_LE(t2.report.rel_error, t1.report.rel_error + 1e-12);
}

TEST(Tensor, CpRecoversPlantedRank) {
  const auto a = planted_cp<double>({9, 10, 11}, 3, 41);
  const auto cp = cp_als(a, 3);
  EXPECT_LE(cp.report.rel_error, 1e-5) << "after " << cp.report.iterations << " iterations";
  const auto a4 = planted_cp<double>({6, 5, 7, 4}, 2, 43);
  EXPECT_LE(cp_als(a4, 2).report.rel_error, 1e-5);
  const auto af = planted_cp<float>({9, 10, 11}, 3, 41);
  EXPECT_LE(cp_als(af, 3).report.rel_error, 1e-4);
}

TEST(Tensor, TensorTrainRecoversPlantedRanks) {
  // A TT tensor with bond ranks (1, 2, 3, 2, 1) built from random cores.
  const std::vector<int64_t> shape{5, 6, 4, 7}, ranks{1, 2, 3, 2, 1};
  TensorTrain<double> planted;
  planted.shape = shape;
  planted.ranks = ranks;
  for (size_t k = 0; k < shape.size(); ++k)
    planted.cores.push_back(gaussian<double>(size_t(ranks[k] * shape[k] * ranks[k + 1]), 50 + k));
  const auto a = planted.reconstruct();
  const auto tt = tt_svd(a, 0, 1e-10);
  EXPECT_EQ(tt.ranks, ranks);
  EXPECT_LE(tt.report.rel_error, 1e-10);
  const auto capped = tt_svd(a, 2, 0);
  EXPECT_EQ(*std::max_element(capped.ranks.begin(), capped.ranks.end()), 2);
  EXPECT_GT(capped.report.rel_error, 1e-3);
  // eps bounds the error.
  const auto g = planted_tucker<double>({6, 7, 8}, {6, 7, 8}, 3);
  for (double eps : {0.3, 0.1}) EXPECT_LE(tt_svd(g, 0, eps).report.rel_error, eps * (1 + 1e-9));
}

TEST(Tensor, MpoOfAMatrix) {
  // A Kronecker product W = B ⊗ C is an MPO of bond rank 1.
  const auto b = gaussian<double>(4 * 3, 61), c = gaussian<double>(5 * 6, 62);
  std::vector<double> w(size_t(20 * 18));
  for (int i = 0; i < 20; ++i)
    for (int j = 0; j < 18; ++j) w[size_t(i * 18 + j)] = b[size_t((i / 5) * 3 + j / 6)] * c[size_t((i % 5) * 6 + j % 6)];
  const auto mpo = mpo_from_matrix(w.data(), {4, 5}, {3, 6}, 0, 1e-12);
  EXPECT_EQ(mpo.ranks, (std::vector<int64_t>{1, 1, 1}));
  const auto back = mpo_to_matrix(mpo, {4, 5}, {3, 6});
  EXPECT_LE(relative_error(w.data(), back.data(), w.size()), 1e-12);
  // A general matrix at full bond rank round-trips.
  const auto g = gaussian<float>(size_t(12 * 20), 63);
  const auto m2 = mpo_from_matrix(g.data(), {2, 3, 2}, {2, 5, 2}, 1000, 0);
  EXPECT_LE(relative_error(g.data(), mpo_to_matrix(m2, {2, 3, 2}, {2, 5, 2}).data(), g.size()), 1e-5);
}

TEST(Tensor, BadInput) {
  DenseTensor<double> t{{3, 4, 5}, std::vector<double>(60, 1.0)};
  EXPECT_THROW(tucker(t, {2, 2}), Error);          // one rank per mode
  EXPECT_THROW(tucker(t, {2, 5, 2}), Error);       // rank > mode size
  EXPECT_THROW(cp_als(t, 0), Error);
  EXPECT_THROW(tt_svd(t, 0, 0), Error);            // no truncation given
  DenseTensor<double> wrong{{3, 4, 6}, std::vector<double>(60, 1.0)};
  EXPECT_THROW(tucker(wrong, {1, 1, 1}), Error);   // shape does not match the data
  t.data[7] = NAN;
  EXPECT_THROW(tt_svd(t, 2, 0), Error);
  const std::vector<double> w(12, 1.0);
  EXPECT_THROW(mpo_from_matrix(w.data(), {2, 2}, {3}, 2, 0), Error);  // mode counts differ
}

}  // namespace tz
