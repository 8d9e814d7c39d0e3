// Dense GEMM: every ISA path (by capping dispatch) against the double-accumulation reference on
// edge shapes; exact on small-integer inputs; a reduction-aware bound on Gaussian data.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <set>
#include <thread>

#include "tensorzip/convert.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

struct Shape3 { int64_t n, m, k; };
// Edges, not the middle: k below/at/above the vector and tile widths, k=4095, partial AMX tiles,
// n=1 (decode), primes.
const Shape3 kShapes[] = {{1, 1, 1}, {1, 7, 4095}, {3, 13, 257}, {7, 1, 31}, {16, 16, 32}, {17, 33, 65},
                          {33, 31, 513}, {64, 96, 128}, {5, 64, 4096}, {31, 17, 2}, {48, 40, 33}, {53, 7, 4095}, {2, 3, 0}};

// |y - ref| <= 2 k u Σ|x||w| (u = 2^-24) bounds f32 accumulation in any order.
void expect_close(const std::vector<float>& y, const std::vector<float>& ref, const std::vector<double>& absdot,
                  int64_t k, const std::string& what) {
  for (size_t i = 0; i < y.size(); ++i) {
    const double tol = 2.0 * double(k + 1) * std::ldexp(1.0, -24) * absdot[i] + 1e-30;
    ASSERT_LE(std::fabs(double(y[i]) - double(ref[i])), tol) << what << " at " << i;
  }
}

std::vector<double> abs_dot(const std::vector<float>& x, const std::vector<float>& w, int64_t n, int64_t m, int64_t k) {
  std::vector<double> out(static_cast<size_t>(n * m));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += std::fabs(double(x[size_t(i * k + p)]) * double(w[size_t(j * k + p)]));
      out[size_t(i * m + j)] = s;
    }
  return out;
}

std::vector<float> small_ints(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(int(rng() % 5) - 2);
  return v;
}

}  // namespace

class GemmIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(GemmIsa, F32MatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : kShapes) {
      const auto x = test::random_floats(size_t(s.n * s.k), 1), w = test::random_floats(size_t(s.m * s.k), 2);
      std::vector<float> y(size_t(s.n * s.m), NAN), ref(y.size());
      gemm_f32(s.n, s.m, s.k, x.data(), s.k, w.data(), s.k, y.data(), s.m);
      gemm_f32_ref(s.n, s.m, s.k, x.data(), s.k, w.data(), s.k, ref.data(), s.m);
      expect_close(y, ref, abs_dot(x, w, s.n, s.m, s.k), s.k,
                   chosen_kernel("gemm_f32") + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k));
    }
  }
}

TEST_P(GemmIsa, Bf16MatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : kShapes) {
      const auto xb = test::to_bf16(test::random_floats(size_t(s.n * s.k), 3));
      const auto wb = test::to_bf16(test::random_floats(size_t(s.m * s.k), 4));
      std::vector<float> xf(xb.size()), wf(wb.size());
      for (size_t i = 0; i < xb.size(); ++i) xf[i] = bf16_to_f32_scalar(xb[i]);
      for (size_t i = 0; i < wb.size(); ++i) wf[i] = bf16_to_f32_scalar(wb[i]);
      std::vector<float> y(size_t(s.n * s.m), NAN), ref(y.size());
      gemm_bf16(s.n, s.m, s.k, xb.data(), s.k, wb.data(), s.k, y.data(), s.m);
      gemm_bf16_ref(s.n, s.m, s.k, xb.data(), s.k, wb.data(), s.k, ref.data(), s.m);
      expect_close(y, ref, abs_dot(xf, wf, s.n, s.m, s.k), s.k,
                   chosen_kernel("gemm_bf16") + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k));
      // Pre-packed weights run the same arithmetic: bit-identical results.
      const auto packed = pack_bf16_weights(wb.data(), s.m, s.k, s.k);
      const std::string kernel = chosen_kernel("gemm_bf16");
      const bool amx = kernel.find("amx") != std::string::npos, panels = amx || kernel.find("avx512bf16") != std::string::npos;
      EXPECT_EQ(packed.tiles.empty(), s.m * s.k == 0 || !panels);
      // Packed, a small n stays on the panel kernel (no plain copy of W is kept) where the unpacked
      // call takes the dot kernel (below 16 tokens on AMX, 48 on AVX-512-BF16): same bound, not bitwise.
      std::vector<float> yp(y.size(), NAN);
      gemm_bf16(s.n, xb.data(), s.k, packed, yp.data(), s.m);
      // From f32 (rounded the same way), directly and transposed: identical tiles / copies.
      {
        std::vector<float> wt(size_t(s.k * s.m));
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.k; ++j) wt[size_t(j * s.m + i)] = wf[size_t(i * s.k + j)];
        const auto pf = pack_bf16_weights_f32(wf.data(), s.m, s.k, s.k);
        const auto pt = pack_bf16_weights_f32(wt.data(), s.m, s.k, s.m, true);
        EXPECT_EQ(pf.tiles, packed.tiles);
        EXPECT_EQ(pt.tiles, packed.tiles);
        EXPECT_EQ(pf.w, packed.w);
        EXPECT_EQ(pt.w, packed.w);
      }
      if (packed.tiles.empty() || s.n >= (amx ? 16 : 48))
        for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(yp[i], y[i]) << "packed, element " << i;
      else
        expect_close(yp, ref, abs_dot(xf, wf, s.n, s.m, s.k), s.k, "packed " + kernel + " n=" + std::to_string(s.n));
    }
  }
}

TEST_P(GemmIsa, ExactOnSmallIntegersWithLeadingDimensions) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const int64_t n = 19, m = 23, k = 301, ldx = k + 5, ldw = k + 3, ldy = m + 7;
  const auto x = small_ints(size_t(n * ldx), 5), w = small_ints(size_t(m * ldw), 6);
  std::vector<float> y(size_t(n * ldy), -99.f), ref(y.size(), -99.f);
  gemm_f32(n, m, k, x.data(), ldx, w.data(), ldw, y.data(), ldy);
  gemm_f32_ref(n, m, k, x.data(), ldx, w.data(), ldw, ref.data(), ldy);
  EXPECT_EQ(y, ref) << chosen_kernel("gemm_f32");  // includes the untouched padding columns
  const auto xb = test::to_bf16(x), wb = test::to_bf16(w);  // small ints are exact in bf16
  std::fill(y.begin(), y.end(), -99.f);
  gemm_bf16(n, m, k, xb.data(), ldx, wb.data(), ldw, y.data(), ldy);
  EXPECT_EQ(y, ref) << chosen_kernel("gemm_bf16");
}

INSTANTIATE_TEST_SUITE_P(AllIsas, GemmIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(Gemm, CapSelectsTheExpectedPath) {
  for (Isa isa : test::supported_isas()) {
    test::ScopedIsa cap(isa);
    const std::string k = chosen_kernel("gemm_bf16");
    switch (isa) {
      case Isa::Scalar: EXPECT_EQ(k, "gemm_bf16_bf16_f32__ref"); break;
      case Isa::Avx2: EXPECT_EQ(k, "gemm_bf16_bf16_f32_4x3__avx2"); break;
      case Isa::Avx512: if (cpu_info().has(kAvx512Bf16)) EXPECT_EQ(k, "gemm_bf16_bf16_f32_12x32__avx512bf16"); break;
      case Isa::Amx: EXPECT_EQ(k, "gemm_bf16_bf16_f32_32x32__amx"); break;
    }
  }
}

// AMX tile state is per thread: run the AMX path from pool threads and from two user threads at once.
TEST(Gemm, AmxFromSeveralThreads) {
  if (cpu_info().max_isa != Isa::Amx) GTEST_SKIP() << "no AMX on this CPU";
  set_num_threads(2);
  const int64_t n = 64, m = 256, k = 512;
  const auto xb = test::to_bf16(test::random_floats(size_t(n * k), 8));
  const auto wb = test::to_bf16(test::random_floats(size_t(m * k), 9));
  std::vector<float> ref(static_cast<size_t>(n * m));
  gemm_bf16_ref(n, m, k, xb.data(), k, wb.data(), k, ref.data(), m);
  std::atomic<int> bad{0};
  auto worker = [&] {
    for (int it = 0; it < 5; ++it) {
      std::vector<float> y(static_cast<size_t>(n * m));
      gemm_bf16(n, m, k, xb.data(), k, wb.data(), k, y.data(), m);
      for (size_t i = 0; i < y.size(); ++i)
        if (std::fabs(y[i] - ref[i]) > 1e-3f * (1.f + std::fabs(ref[i]))) bad++;
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(chosen_kernel("gemm_bf16"), "gemm_bf16_bf16_f32_32x32__amx");
}

// Inside pool tasks (one attention head each) the products run on our own kernels: same results
// as the reference within the f32 bound, from both threads at once, every cap.
TEST(Gemm, InTaskMatchesReference) {
  for (Isa isa : test::supported_isas()) {
    test::ScopedIsa cap(isa);
    set_num_threads(2);
    const int64_t n = 37, m = 29, k = 129;
    std::vector<std::vector<float>> ys(4, std::vector<float>(size_t(n * m), NAN));
    const auto x = test::random_floats(size_t(n * k), 21), w = test::random_floats(size_t(m * k), 22);
    std::vector<float> ref(size_t(n * m));
    gemm_f32_ref(n, m, k, x.data(), k, w.data(), k, ref.data(), m);
    parallel_for(4, [&](int64_t i, int) { gemm_f32_in_task(n, m, k, x.data(), k, w.data(), k, ys[size_t(i)].data(), m); });
    for (const auto& y : ys) expect_close(y, ref, abs_dot(x, w, n, m, k), k, std::string("in task, cap ") + isa_name(isa));
  }
}

TEST(Gemm, LinearChecksShapes) {
  Tensor x = Tensor::zeros(DType::F32, {2, 3}), w = Tensor::zeros(DType::F32, {4, 5});
  EXPECT_THROW(linear(x, w), Error);
  Tensor wb = Tensor::zeros(DType::BF16, {4, 3});
  EXPECT_THROW(linear(x, wb), Error);
  Tensor w3 = Tensor::zeros(DType::F32, {4, 3});
  Tensor y = linear(x, w3);
  EXPECT_EQ(y.shape(), (Shape{2, 4}));
  Tensor xi = Tensor::zeros(DType::I8, {2, 3}), wi = Tensor::zeros(DType::I8, {4, 3});
  EXPECT_THROW(linear(xi, wi), Error);
  float a[4] = {};
  EXPECT_THROW(gemm_f32(2, 2, 2, a, 1, a, 2, a, 2), Error);  // ldx < k
}

}  // namespace tz
