// FFT convolution: every ISA path against a float64 direct convolution (relative L2 <= 1e-5),
// causal and circular, odd H, B = 1, partial filters, frequency masks, gating, bf16, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/fftconv.h"
#include "tensorzip/memory.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

double rel_l2(const float* y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(y[i]) - ref[i];
    num += std::isfinite(d) ? d * d : INFINITY;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Reference for all rows: y[b,h] = v ⊙ conv(u ⊙ w, k[h]) in float64.
std::vector<double> reference(const std::vector<float>& u, const std::vector<float>& k, int64_t b, int64_t h, int64_t n,
                              int64_t nk, ConvMode mode, const float* v = nullptr, const float* w = nullptr) {
  std::vector<double> out(size_t(b * h * n)), row(static_cast<size_t>(n));
  std::vector<float> ug(static_cast<size_t>(n));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < h; ++c) {
      const size_t off = size_t((bi * h + c) * n);
      for (int64_t t = 0; t < n; ++t) ug[size_t(t)] = w ? u[off + size_t(t)] * w[off + size_t(t)] : u[off + size_t(t)];
      fftconv_direct_ref(ug.data(), n, k.data() + c * nk, nk, mode, row.data());
      for (int64_t t = 0; t < n; ++t) out[off + size_t(t)] = v ? row[size_t(t)] * double(v[off + size_t(t)]) : row[size_t(t)];
    }
  return out;
}

}  // namespace

class FftConvIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(FftConvIsa, MatchesDirectConvolution) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  set_num_threads(2);
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular})
    for (int64_t n : {8, 16, 32, 256, 2048})
      for (int64_t h : {1, 3, 17})
        for (int64_t nk : {n, n / 3 + 1, int64_t(1)}) {
          const int64_t b = h == 3 ? 2 : 1;
          const auto u = test::random_floats(size_t(b * h * n), uint32_t(n + h));
          const auto k = test::random_floats(size_t(h * nk), uint32_t(n * 7 + nk), 1.f / std::sqrt(float(nk)));
          const auto plan = FftConvPlan::create(n, h, k.data(), nk, {mode, {}});
          std::vector<float> y(u.size(), NAN);
          plan.conv(u.data(), b, y.data());
          EXPECT_LE(rel_l2(y.data(), reference(u, k, b, h, n, nk, mode)), 1e-5)
              << plan.kernel() << (mode == ConvMode::Causal ? " causal" : " circular") << " n=" << n << " h=" << h << " nk=" << nk;
        }
}

TEST_P(FftConvIsa, GatedAndInPlace) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const int64_t b = 2, h = 5, n = 512, nk = 100;
  auto u = test::random_floats(size_t(b * h * n), 1);
  const auto v = test::random_floats(u.size(), 2), w = test::random_floats(u.size(), 3);
  const auto k = test::random_floats(size_t(h * nk), 4, 0.1f);
  const auto plan = FftConvPlan::create(n, h, k.data(), nk);
  std::vector<float> y(u.size());
  plan.conv_gated(u.data(), v.data(), w.data(), b, y.data());
  EXPECT_LE(rel_l2(y.data(), reference(u, k, b, h, n, nk, ConvMode::Causal, v.data(), w.data())), 1e-5);
  const auto ref = reference(u, k, b, h, n, nk, ConvMode::Causal);
  plan.conv(u.data(), b, u.data());  // y aliases u
  EXPECT_LE(rel_l2(u.data(), ref), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, FftConvIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(FftConv, PartialEqualsZeroPaddedFilter) {
  const int64_t h = 3, n = 1024, nk = 77;
  const auto u = test::random_floats(size_t(h * n), 5);
  const auto k = test::random_floats(size_t(h * nk), 6);
  std::vector<float> kp(size_t(h * n), 0.f);
  for (int64_t c = 0; c < h; ++c)
    for (int64_t j = 0; j < nk; ++j) kp[size_t(c * n + j)] = k[size_t(c * nk + j)];
  std::vector<float> y1(u.size()), y2(u.size());
  FftConvPlan::create(n, h, k.data(), nk).conv(u.data(), 1, y1.data());
  FftConvPlan::create(n, h, kp.data(), n).conv(u.data(), 1, y2.data());
  EXPECT_EQ(y1, y2);
}

TEST(FftConv, FrequencyMask) {
  const int64_t h = 2, n = 4096;
  const auto u = test::random_floats(size_t(h * n), 7);
  const auto k = test::random_floats(size_t(h * n), 8, 0.02f);
  const int64_t blocks = (n + 1 + kFreqMaskBlock - 1) / kFreqMaskBlock;
  std::vector<float> dense(u.size()), ones(u.size()), lo(u.size()), hi(u.size()), none(u.size());
  FftConvPlan::create(n, h, k.data(), n).conv(u.data(), 1, dense.data());
  FftConvPlan::create(n, h, k.data(), n, {ConvMode::Causal, std::vector<uint8_t>(size_t(blocks), 1)}).conv(u.data(), 1, ones.data());
  EXPECT_EQ(ones, dense);  // an all-ones mask is the dense convolution
  std::vector<uint8_t> mlo(size_t(blocks), 0), mhi(size_t(blocks), 1);
  for (int64_t i = 0; i < blocks / 3; ++i) mlo[size_t(i)] = 1, mhi[size_t(i)] = 0;
  FftConvPlan::create(n, h, k.data(), n, {ConvMode::Causal, mlo}).conv(u.data(), 1, lo.data());
  FftConvPlan::create(n, h, k.data(), n, {ConvMode::Causal, mhi}).conv(u.data(), 1, hi.data());
  // Complementary masks split the spectrum: the two results add up to the dense one.
  std::vector<double> dense_d(dense.begin(), dense.end());
  std::vector<float> sum(u.size());
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = lo[i] + hi[i];
  EXPECT_LE(rel_l2(sum.data(), dense_d), 1e-5);
  EXPECT_GT(rel_l2(lo.data(), dense_d), 1e-2);  // and each alone is different
  FftConvPlan::create(n, h, k.data(), n, {ConvMode::Causal, std::vector<uint8_t>(size_t(blocks), 0)}).conv(u.data(), 1, none.data());
  for (float x : none) ASSERT_EQ(x, 0.f);
}

TEST(FftConv, Bf16Inputs) {
  const int64_t h = 4, n = 1024, nk = 64;
  const auto uf = test::random_floats(size_t(h * n), 9);
  const auto ub = test::to_bf16(uf);
  std::vector<float> ur(ub.size());
  for (size_t i = 0; i < ub.size(); ++i) ur[i] = bf16_to_f32_scalar(ub[i]);
  const auto k = test::random_floats(size_t(h * nk), 10);
  std::vector<float> y(uf.size());
  FftConvPlan::create(n, h, k.data(), nk).conv_bf16(ub.data(), 1, y.data());
  EXPECT_LE(rel_l2(y.data(), reference(ur, k, 1, h, n, nk, ConvMode::Causal)), 1e-5);
}

// The bf16 plan (AMX Monarch on AMX CPUs, else the fp32 kernel) against the fp32 kernel on the
// same bf16-rounded inputs (itself within 1e-5 of float64, above): relative L2 <= 1e-2, every size
// from one 256-block to 64K (top radix 1, 2, 4 and 8), causal and circular, partial filters,
// odd H, B = 1 and 2, frequency masks.
TEST_P(FftConvIsa, Bf16PlanMatchesF32) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  set_num_threads(2);
  double worst = 0;
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular})
    for (int64_t n : {256, 512, 1024, 2048, 4096, 8192, 65536, 262144})
      for (int64_t h : {1, 3}) {
        if (n > 65536 && h > 1) continue;
        const int64_t b = h == 3 ? 2 : 1, nk = h == 3 ? n / 3 + 1 : n;
        const auto u = test::random_floats(size_t(b * h * n), uint32_t(n + h + 5));
        const auto k = test::random_floats(size_t(h * nk), uint32_t(n * 3 + nk), 1.f / std::sqrt(float(nk)));
        const auto ub = test::to_bf16(u);
        std::vector<float> ur(ub.size());
        for (size_t i = 0; i < ub.size(); ++i) ur[i] = bf16_to_f32_scalar(ub[i]);
        FftConvOptions o{mode, {}};
        if (n == 4096) {
          const int64_t bins = (mode == ConvMode::Causal ? n : n / 2) + 1;
          o.freq_mask.assign(size_t((bins + kFreqMaskBlock - 1) / kFreqMaskBlock), 1);
          o.freq_mask[3] = 0;
        }
        const auto ref_plan = FftConvPlan::create(n, h, k.data(), nk, o);
        o.dtype = ConvDtype::Bf16;
        o.bf16_path = ConvBf16Path::Monarch;
        const auto plan = FftConvPlan::create(n, h, k.data(), nk, o);
        const bool amx = GetParam() == Isa::Amx && (mode == ConvMode::Causal ? n : n / 2) >= 256;
        EXPECT_EQ(std::string(plan.kernel_bf16()).find("amx") != std::string::npos, amx) << plan.kernel_bf16();
        std::vector<float> y(u.size(), NAN), yr(u.size());
        ref_plan.conv(ur.data(), b, yr.data());
        plan.conv_bf16(ub.data(), b, y.data());
        std::vector<double> yd(yr.begin(), yr.end());
        const double e = rel_l2(y.data(), yd);
        worst = std::max(worst, e);
        EXPECT_LE(e, amx ? 1e-2 : 1e-5) << "n=" << n << " h=" << h << " mode=" << int(mode);
      }
  std::printf("worst relative L2 error of the bf16 plan (%s): %.2e\n", isa_name(GetParam()), worst);
}

// The direct (Toeplitz) AMX kernel against float64 on the same bf16-rounded u and k: it only
// differs by fp32 accumulation (relative L2 <= 1e-5), and within 1e-2 of the unrounded filter's
// result. Causal and circular, full, partial (one slice, slice edges ±1) and one-tap filters,
// odd H, B = 3 and 8, row counts that split unevenly over threads, the same filter on
// consecutive rows (H = 1). Without AMX the Direct choice runs the fp32 kernel (1e-5 of f32).
TEST_P(FftConvIsa, DirectMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const bool amx = GetParam() == Isa::Amx;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular})
      for (int64_t n : {512, 1024, 2048, 4096})
        for (int64_t nk : {n, n / 3 + 1, int64_t(1), int64_t(31), int64_t(32), int64_t(33), int64_t(100)})
          for (int64_t h : {1, 3}) {
            if (threads == 2 && n != 1024) continue;
            const int64_t b = h == 3 ? 3 : 8;  // H = 1, B = 8: tasks of 2 rows reuse the filter windows
            const auto u = test::random_floats(size_t(b * h * n), uint32_t(n + h + nk));
            const auto k = test::random_floats(size_t(h * nk), uint32_t(n * 5 + nk), 1.f / std::sqrt(float(nk)));
            const auto ub = test::to_bf16(u), kb = test::to_bf16(k);
            std::vector<float> ur(ub.size()), kr(kb.size());
            for (size_t i = 0; i < ub.size(); ++i) ur[i] = bf16_to_f32_scalar(ub[i]);
            for (size_t i = 0; i < kb.size(); ++i) kr[i] = bf16_to_f32_scalar(kb[i]);
            FftConvOptions o{mode, {}};
            o.dtype = ConvDtype::Bf16;
            o.bf16_path = ConvBf16Path::Direct;
            const auto plan = FftConvPlan::create(n, h, k.data(), nk, o);
            ASSERT_EQ(std::string(plan.kernel_bf16()).find("direct") != std::string::npos, amx) << plan.kernel_bf16();
            std::vector<float> y(u.size(), NAN);
            plan.conv_bf16(ub.data(), b, y.data());
            const auto what = [&] {
              return std::string(mode == ConvMode::Causal ? "causal" : "circular") + " n=" + std::to_string(n) +
                     " nk=" + std::to_string(nk) + " h=" + std::to_string(h) + " threads=" + std::to_string(threads);
            };
            if (amx) EXPECT_LE(rel_l2(y.data(), reference(ur, kr, b, h, n, nk, mode)), 1e-5) << what();
            EXPECT_LE(rel_l2(y.data(), reference(ur, k, b, h, n, nk, mode)), amx ? 1e-2 : 1e-5) << what();
          }
  }
}

// Auto picks the direct AMX kernel where its tile work is estimated below the FFT's (n = 1K, short
// filters), else the Monarch kernel from m = 2048 on (AMX CPUs), the fp32 kernel below;
// F32Kernel never builds the matrix-unit tables; a frequency mask or n < 512 rules out Direct.
TEST(FftConv, Bf16PathChoice) {
  const std::vector<float> k(65536, 0.01f);
  const bool amx = cpu_info().max_isa == Isa::Amx;
  const auto name = [&](int64_t n, ConvMode mode, ConvBf16Path path, int64_t nk) {
    FftConvOptions o{mode, {}};
    o.dtype = ConvDtype::Bf16;
    o.bf16_path = path;
    return std::string(FftConvPlan::create(n, 1, k.data(), nk, o).kernel_bf16());
  };
  const auto monarch = [](const std::string& s) { return s.find("monarch") != std::string::npos; };
  const auto direct = [](const std::string& s) { return s.find("direct") != std::string::npos; };
  EXPECT_EQ(direct(name(1024, ConvMode::Causal, ConvBf16Path::Auto, 1024)), amx);
  EXPECT_EQ(direct(name(65536, ConvMode::Causal, ConvBf16Path::Auto, 64)), amx);  // partial: O(n·nk) wins
  EXPECT_EQ(monarch(name(4096, ConvMode::Causal, ConvBf16Path::Auto, 4096)), amx);
  EXPECT_EQ(monarch(name(65536, ConvMode::Causal, ConvBf16Path::Auto, 65536)), amx);
  EXPECT_FALSE(monarch(name(1024, ConvMode::Causal, ConvBf16Path::Auto, 1024)));
  EXPECT_FALSE(direct(name(256, ConvMode::Causal, ConvBf16Path::Direct, 256)));  // n < 512
  EXPECT_EQ(monarch(name(256, ConvMode::Causal, ConvBf16Path::Monarch, 16)), amx);
  EXPECT_FALSE(monarch(name(256, ConvMode::Circular, ConvBf16Path::Monarch, 16)));  // m = 128: unsupported
  EXPECT_FALSE(monarch(name(4096, ConvMode::Causal, ConvBf16Path::F32Kernel, 16)));
  EXPECT_FALSE(direct(name(4096, ConvMode::Causal, ConvBf16Path::F32Kernel, 16)));
  FftConvOptions masked{ConvMode::Causal, std::vector<uint8_t>(17, 1)};  // 1025 bins
  masked.dtype = ConvDtype::Bf16;
  masked.bf16_path = ConvBf16Path::Direct;
  EXPECT_FALSE(direct(FftConvPlan::create(1024, 1, k.data(), 1024, masked).kernel_bf16()));
  FftConvOptions f32;
  EXPECT_FALSE(monarch(FftConvPlan::create(4096, 1, k.data(), 16, f32).kernel_bf16()));  // f32 plans
  EXPECT_FALSE(direct(FftConvPlan::create(1024, 1, k.data(), 16, f32).kernel_bf16()));
}

TEST(FftConv, BadArguments) {
  const std::vector<float> k(64, 0.1f);
  EXPECT_THROW(FftConvPlan::create(48, 1, k.data(), 8), Error);   // not a power of two
  EXPECT_THROW(FftConvPlan::create(4, 1, k.data(), 4), Error);    // too small
  EXPECT_THROW(FftConvPlan::create(32, 1, k.data(), 33), Error);  // filter longer than n
  EXPECT_THROW(FftConvPlan::create(32, 0, k.data(), 8), Error);
  auto bad = k;
  bad[5] = NAN;
  EXPECT_THROW(FftConvPlan::create(64, 1, bad.data(), 64), Error);
  EXPECT_THROW(FftConvPlan::create(64, 1, k.data(), 64, {ConvMode::Causal, {1, 1, 1, 1}}), Error);  // mask size
}

}  // namespace tz

namespace tz {
namespace {

// float64 gradients of y = conv(u, k): du[s] = Σ_j dy[s+j] k[j], dk[j] = Σ_b Σ_t dy[t] u[t−j].
void grad_ref(const std::vector<float>& u, const std::vector<float>& dy, const std::vector<float>& k, int64_t b, int64_t h,
              int64_t n, int64_t nk, ConvMode mode, std::vector<double>& du, std::vector<double>& dk) {
  du.assign(u.size(), 0.0);
  dk.assign(size_t(h * nk), 0.0);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < h; ++c) {
      const size_t off = size_t((bi * h + c) * n);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < nk; ++j) {
          int64_t s = t - j;
          if (s < 0) {
            if (mode == ConvMode::Causal) break;
            s += n;
          }
          du[off + size_t(s)] += double(dy[off + size_t(t)]) * k[size_t(c * nk + j)];
          dk[size_t(c * nk + j)] += double(dy[off + size_t(t)]) * u[off + size_t(s)];
        }
    }
}

}  // namespace

TEST_P(FftConvIsa, BackwardMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular})
    for (int64_t n : {16, 512})
      for (int64_t h : {1, 3, 17}) {
        const int64_t b = 2, nk = n / 2 + 1;
        const auto u = test::random_floats(size_t(b * h * n), 11), dy = test::random_floats(u.size(), 12);
        const auto k = test::random_floats(size_t(h * nk), 13, 0.1f);
        const auto plan = FftConvPlan::create(n, h, k.data(), nk, {mode, {}});
        std::vector<float> du(u.size()), dk(k.size());
        plan.backward(u.data(), dy.data(), b, du.data(), dk.data());
        std::vector<double> du_ref, dk_ref;
        grad_ref(u, dy, k, b, h, n, nk, mode, du_ref, dk_ref);
        const std::string what = std::string(plan.kernel()) + (mode == ConvMode::Causal ? " causal" : " circular") +
                                 " n=" + std::to_string(n) + " h=" + std::to_string(h);
        EXPECT_LE(rel_l2(du.data(), du_ref), 1e-5) << what;
        EXPECT_LE(rel_l2(dk.data(), dk_ref), 1e-5) << what;
      }
}

// m >= 64K: blocks and leaves in mirrored pairs with the spectral step between them, the spectrum in
// position order (fftconv_impl.h leaf_pairs) — one thread per group, and two splitting the block
// pairs of one group: convolution and du against float64, and complementary frequency masks
// adding up to the dense result (the masked bins go through the same pair step).
TEST_P(FftConvIsa, LeafPairPathMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const int64_t h = 3, b = 1, nk = 100;
  const auto k = test::random_floats(size_t(h * nk), 61, 0.1f);
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular}) {
    const int64_t n = mode == ConvMode::Causal ? 65536 : 131072;  // m = 64K
    const auto u = test::random_floats(size_t(b * h * n), 62), dy = test::random_floats(u.size(), 63);
    const auto plan = FftConvPlan::create(n, h, k.data(), nk, {mode, {}});
    std::vector<double> du_ref, dk_ref;
    grad_ref(u, dy, k, b, h, n, nk, mode, du_ref, dk_ref);
    const auto y_ref = reference(u, k, b, h, n, nk, mode);
    const int64_t blocks = (n / (mode == ConvMode::Causal ? 1 : 2) + 1 + kFreqMaskBlock - 1) / kFreqMaskBlock;
    std::vector<uint8_t> mlo(size_t(blocks), 0), mhi(size_t(blocks), 1);
    for (int64_t i = 0; i < blocks / 3; ++i) mlo[size_t(i)] = 1, mhi[size_t(i)] = 0;
    const auto plan_lo = FftConvPlan::create(n, h, k.data(), nk, {mode, mlo});
    const auto plan_hi = FftConvPlan::create(n, h, k.data(), nk, {mode, mhi});
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      const std::string what = std::string(mode == ConvMode::Causal ? "causal" : "circular") + " threads " + std::to_string(threads);
      std::vector<float> y(u.size(), NAN), du(u.size(), NAN), dk(k.size()), lo(u.size()), hi(u.size());
      plan.conv(u.data(), b, y.data());
      EXPECT_LE(rel_l2(y.data(), y_ref), 1e-5) << what;
      plan.backward(u.data(), dy.data(), b, du.data(), dk.data());
      EXPECT_LE(rel_l2(du.data(), du_ref), 1e-5) << what;
      EXPECT_LE(rel_l2(dk.data(), dk_ref), 1e-5) << what;
      plan_lo.conv(u.data(), b, lo.data());
      plan_hi.conv(u.data(), b, hi.data());
      std::vector<float> sum(u.size());
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = lo[i] + hi[i];
      std::vector<double> yd(y.begin(), y.end());
      EXPECT_LE(rel_l2(sum.data(), yd), 1e-5) << what;
      EXPECT_GT(rel_l2(lo.data(), yd), 1e-2) << what;
    }
  }
}

TEST(FftConv, GatedBackwardMatchesReference) {
  const int64_t b = 2, h = 5, n = 256, nk = 40;
  const auto u = test::random_floats(size_t(b * h * n), 21), v = test::random_floats(u.size(), 22);
  const auto w = test::random_floats(u.size(), 23), dy = test::random_floats(u.size(), 24);
  const auto k = test::random_floats(size_t(h * nk), 25, 0.1f);
  const auto plan = FftConvPlan::create(n, h, k.data(), nk);
  std::vector<float> du(u.size()), dv(u.size()), dw(u.size()), dk(k.size());
  plan.backward_gated(u.data(), v.data(), w.data(), dy.data(), b, du.data(), dv.data(), dw.data(), dk.data());
  // Chain rule on the float64 references: with x = u ⊙ w and e = dy ⊙ v,
  // g = corr(e, k), du = g ⊙ w, dw = g ⊙ u, dv = dy ⊙ conv(x, k), dk = Σ corr(e, x).
  std::vector<float> x(u.size()), e(u.size());
  for (size_t i = 0; i < u.size(); ++i) x[i] = u[i] * w[i], e[i] = dy[i] * v[i];
  std::vector<double> g, dk_ref;
  grad_ref(x, e, k, b, h, n, nk, ConvMode::Causal, g, dk_ref);
  const auto y = reference(x, k, b, h, n, nk, ConvMode::Causal);
  std::vector<double> du_ref(u.size()), dw_ref(u.size()), dv_ref(u.size());
  for (size_t i = 0; i < u.size(); ++i) du_ref[i] = g[i] * w[i], dw_ref[i] = g[i] * u[i], dv_ref[i] = dy[i] * y[i];
  EXPECT_LE(rel_l2(du.data(), du_ref), 1e-5);
  EXPECT_LE(rel_l2(dw.data(), dw_ref), 1e-5);
  EXPECT_LE(rel_l2(dv.data(), dv_ref), 1e-5);
  EXPECT_LE(rel_l2(dk.data(), dk_ref), 1e-5);
}

// Central finite differences of L = Σ r ⊙ conv(u, k) against the analytic gradients.
TEST(FftConv, BackwardMatchesFiniteDifferences) {
  const int64_t b = 2, h = 2, n = 32, nk = 9;
  auto u = test::random_floats(size_t(b * h * n), 31);
  auto k = test::random_floats(size_t(h * nk), 32, 0.3f);
  const auto r = test::random_floats(u.size(), 33);
  const auto loss = [&](const std::vector<float>& uu, const std::vector<float>& kk) {
    std::vector<float> y(uu.size());
    FftConvPlan::create(n, h, kk.data(), nk).conv(uu.data(), b, y.data());
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += double(r[i]) * y[i];
    return l;
  };
  std::vector<float> du(u.size()), dk(k.size());
  FftConvPlan::create(n, h, k.data(), nk).backward(u.data(), r.data(), b, du.data(), dk.data());
  const float eps = 1e-2f;
  for (size_t i : {size_t(0), size_t(7), size_t(31), size_t(70), size_t(127)}) {
    auto up = u, um = u;
    up[i] += eps, um[i] -= eps;
    const double fd = (loss(up, k) - loss(um, k)) / (2.0 * eps);
    EXPECT_NEAR(du[i], fd, 2e-3 * (1.0 + std::fabs(fd))) << "du[" << i << "]";
  }
  for (size_t j = 0; j < k.size(); ++j) {
    auto kp = k, km = k;
    kp[j] += eps, km[j] -= eps;
    const double fd = (loss(u, kp) - loss(u, km)) / (2.0 * eps);
    EXPECT_NEAR(dk[j], fd, 2e-3 * (1.0 + std::fabs(fd))) << "dk[" << j << "]";
  }
}

}  // namespace tz

namespace tz {

// Fewer row groups than threads and long rows: the group's stages are split across the pool.
// Same arithmetic per element as one thread, so the result is identical.
// Rows long enough for the fused top pass (m >= 16K: two radix-4 levels in one pass, the causal
// padding neither written nor read) on every ISA path: plain and gated, causal and circular.
TEST_P(FftConvIsa, FusedTopPassEveryPath) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const int64_t h = 3, nk = 77;
  const auto k = test::random_floats(size_t(h * nk), 52, 0.1f);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular}) {
      const int64_t n = mode == ConvMode::Causal ? 16384 : 32768;  // m = 16K either way
      const int64_t b = 2;
      const auto u = test::random_floats(size_t(b * h * n), 53), v = test::random_floats(size_t(b * h * n), 54),
                 w = test::random_floats(size_t(b * h * n), 55);
      const auto plan = FftConvPlan::create(n, h, k.data(), nk, {mode, {}});
      std::vector<float> y(u.size(), NAN);
      plan.conv(u.data(), b, y.data());
      EXPECT_LE(rel_l2(y.data(), reference(u, k, b, h, n, nk, mode)), 1e-5) << "plain";
      plan.conv_gated(u.data(), v.data(), w.data(), b, y.data());
      EXPECT_LE(rel_l2(y.data(), reference(u, k, b, h, n, nk, mode, v.data(), w.data())), 1e-5) << "gated";
    }
  }
  // m = 1M: the load and the store are fused into the top passes, and the 64K-point blocks take
  // the fused pair of levels too; one thread, and two splitting the row's stages.
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular}) {
    const int64_t n = mode == ConvMode::Causal ? 1048576 : 2097152;
    const auto u = test::random_floats(size_t(n), 56);
    const auto plan = FftConvPlan::create(n, 1, k.data(), nk, {mode, {}});
    const auto ref = reference(u, k, 1, 1, n, nk, mode);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      std::vector<float> y(u.size(), NAN);
      plan.conv(u.data(), 1, y.data());
      EXPECT_LE(rel_l2(y.data(), ref), 1e-5) << "m = 1M, threads " << threads;
    }
  }
}

// Long rows: 32K (two fused top levels) and 256K (three), one and two threads (few rows: the
// group's stages are split across the pool), bit-identical and against float64.
// Outputs of 8 MB and more into a 64-byte aligned y are written with non-temporal stores: the same
// values as the cached stores into an unaligned y, bit for bit, on both kernels (n = 128K: the
// Monarch plan has a radix-2 top stage, which writes y too).
TEST(FftConv, StreamedOutputEqualsCachedOutput) {
  const int64_t h = 16, n = 131072, nk = 300;
  const auto k = test::random_floats(size_t(h * nk), 57, 0.1f);
  const auto u = test::random_floats(size_t(h * n), 58);
  std::vector<uint16_t> ub(u.size());
  f32_to_bf16(u.data(), ub.data(), u.size());
  FftConvOptions obf;
  obf.dtype = ConvDtype::Bf16;
  const auto ref = reference(u, k, 1, h, n, nk, ConvMode::Causal);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (bool bf : {false, true}) {
      const auto plan = FftConvPlan::create(n, h, k.data(), nk, bf ? obf : FftConvOptions{});
      LargeVector<float> streamed(u.size(), NAN), cached(u.size() + 4, NAN);
      float* unaligned = cached.data() + 4;  // 16 bytes off: plain stores
      if (bf) {
        plan.conv_bf16(ub.data(), 1, streamed.data());
        plan.conv_bf16(ub.data(), 1, unaligned);
      } else {
        plan.conv(u.data(), 1, streamed.data());
        plan.conv(u.data(), 1, unaligned);
      }
      EXPECT_EQ(std::memcmp(streamed.data(), unaligned, u.size() * sizeof(float)), 0) << (bf ? "bf16" : "f32") << " threads " << threads;
      EXPECT_LE(rel_l2(streamed.data(), ref), bf ? 1e-2 : 1e-5);
    }
  }
}

TEST(FftConv, LongRowsSplitAcrossThreads) {
  const int64_t h = 3, nk = 100;
  const auto k = test::random_floats(size_t(h * nk), 42, 0.1f);
  for (int64_t n : {int64_t(32768), int64_t(262144)})
  for (ConvMode mode : {ConvMode::Causal, ConvMode::Circular}) {
    const int64_t nn = mode == ConvMode::Causal ? n : 2 * n;  // circular: m = n/2, so double n
    const auto uu = test::random_floats(size_t(h * nn), 43);
    const auto plan = FftConvPlan::create(nn, h, k.data(), nk, {mode, {}});
    std::vector<float> y1(uu.size()), y2(uu.size());
    set_num_threads(1);
    plan.conv(uu.data(), 1, y1.data());
    set_num_threads(2);
    plan.conv(uu.data(), 1, y2.data());
    EXPECT_EQ(y1, y2);
    EXPECT_LE(rel_l2(y2.data(), reference(uu, k, 1, h, nn, nk, mode)), 1e-5);
  }
}

}  // namespace tz
