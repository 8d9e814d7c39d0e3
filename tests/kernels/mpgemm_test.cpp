// Low-bit GEMM: packing is exact; every ISA path of the LUT kernel (fast and exact tables) and of
// the dequant baseline against the dequantize + double-accumulation reference, on odd shapes.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

struct Case { int bits; bool sym; bool ternary; int group; DType scale; };

QuantFormat fmt_of(const Case& c) {
  QuantFormat f;
  f.bits = c.ternary ? 2 : c.bits;
  f.symmetric = c.sym || c.ternary;
  f.ternary = c.ternary;
  f.group = c.group;
  f.scale_dtype = c.scale;
  return f;
}

std::string name_of(const Case& c, int64_t m, int64_t k, int64_t n) {
  return fmt_of(c).to_string() + " m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n);
}

const Case kCases[] = {
    {1, true, false, 128, DType::F32}, {2, true, false, 128, DType::F32}, {3, true, false, 64, DType::F16},
    {4, true, false, 32, DType::F32},  {4, false, false, 128, DType::F16}, {2, false, false, 256, DType::F32},
    {2, true, true, 0, DType::F32},    {3, false, false, 0, DType::F32},  {1, true, true, 64, DType::F16},
};

struct Shape3 { int64_t m, k; };
const Shape3 kShapes[] = {{37, 4095}, {16, 32}, {1, 257}, {33, 64}, {7, 31}};

}  // namespace

TEST(MpGemm, PackUnpackIsExact) {
  for (const auto& c : kCases)
    for (const auto& s : kShapes) {
      const auto w = test::random_floats(size_t(s.m * s.k), 21);
      const QuantMatrix q = quantize_rtn_ref(w.data(), s.m, s.k, fmt_of(c));
      const QuantMatrix back = LutWeights::pack(q).unpack();
      EXPECT_EQ(back.codes, q.codes) << name_of(c, s.m, s.k, 0);
      EXPECT_EQ(back.scales, q.scales) << name_of(c, s.m, s.k, 0);
      EXPECT_EQ(back.zeros, q.zeros) << name_of(c, s.m, s.k, 0);
    }
  for (int bits = 5; bits <= 8; ++bits) {
    QuantFormat f;
    f.bits = bits;
    f.group = 64;
    const auto w = test::random_floats(size_t(9 * 100), 22);
    const QuantMatrix q = quantize_rtn_ref(w.data(), 9, 100, f);
    EXPECT_EQ(LutWeights::pack(q).unpack().codes, q.codes) << bits;
  }
}

TEST(MpGemm, RejectsUnsupportedFormats) {
  const auto w = test::random_floats(4 * 96, 1);
  QuantFormat f;
  f.group = 48;
  EXPECT_THROW(LutWeights::pack(quantize_rtn_ref(w.data(), 4, 96, f)), Error);
  EXPECT_THROW(DequantWeights::pack(quantize_rtn_ref(w.data(), 4, 96, f)), Error);
  QuantMatrix bad = quantize_rtn_ref(w.data(), 4, 96, QuantFormat{});
  bad.codes.pop_back();
  EXPECT_THROW(LutWeights::pack(bad), Error);
  const LutWeights lw = LutWeights::pack(quantize_rtn_ref(w.data(), 4, 96, QuantFormat{}));
  std::vector<float> x(96), y(4);
  EXPECT_THROW(mpgemm(lw, x.data(), 1, 95, y.data(), 4), Error);  // ldx < k
  EXPECT_THROW(mpgemm(lw, x.data(), 1, 96, y.data(), 3), Error);  // ldy < m
}

class MpGemmIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(MpGemmIsa, LutMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& c : kCases)
      for (const auto& s : kShapes)
        for (int64_t n : {1, 3, 9}) {
          const auto w = test::random_floats(size_t(s.m * s.k), 31);
          const auto x = test::random_floats(size_t(n * s.k), 32);
          const QuantMatrix q = quantize_rtn_ref(w.data(), s.m, s.k, fmt_of(c));
          const LutWeights lw = LutWeights::pack(q);
          std::vector<float> ref(size_t(n * s.m)), fast(ref.size(), NAN), exact(ref.size(), NAN);
          mpgemm_ref(q, x.data(), n, s.k, ref.data(), s.m);
          mpgemm(lw, x.data(), n, s.k, fast.data(), s.m, LutMode::Fast);
          mpgemm(lw, x.data(), n, s.k, exact.data(), s.m, LutMode::Exact);
          const std::string what = chosen_kernel("mpgemm_lut") + " " + name_of(c, s.m, s.k, n);
          EXPECT_LE(test::max_rel_err(exact, ref), 1e-5) << what;
          // int8 tables: the documented bound (docs/kernels.md). A single dot product can cancel
          // to near zero, so tiny outputs get a looser bound than aggregates.
          EXPECT_LE(test::rel_l2(fast, ref), s.m * n >= 16 ? 2e-2 : 5e-2) << what;
        }
  }
}

// The documented bound at a realistic size: Gaussian weights and activations, k = 4096, fast
// (int8-table) mode within 1e-2 of max|y| at every width; the int8-tile path within 1.5e-2.
TEST(MpGemm, FastModeBoundAtRealisticSize) {
  const int64_t m = 256, k = 4096, n = 4;
  const auto w = test::random_floats(size_t(m * k), 91), x = test::random_floats(size_t(n * k), 92);
  for (const auto& c : kCases) {
    const QuantMatrix q = quantize_rtn_ref(w.data(), m, k, fmt_of(c));
    const LutWeights lw = LutWeights::pack(q);
    std::vector<float> ref(size_t(n * m)), y(ref.size());
    mpgemm_ref(q, x.data(), n, k, ref.data(), m);
    mpgemm(lw, x.data(), n, k, y.data(), m, LutMode::Fast, MpGemmPath::Lut);
    EXPECT_LE(test::max_rel_err(y, ref), 1e-2) << name_of(c, m, k, n);
    if (mpgemm_int8_supported(lw)) {
      mpgemm(lw, x.data(), n, k, y.data(), m, LutMode::Fast, MpGemmPath::Int8);
      EXPECT_LE(test::max_rel_err(y, ref), 1.5e-2) << "int8 " << name_of(c, m, k, n);
    }
  }
}

// Fast mode is integer arithmetic up to one shared float epilogue: every path gives the same bits.
TEST(MpGemm, FastModeIsIdenticalOnEveryPath) {
  const int64_t m = 45, k = 1000, n = 5;
  for (const auto& c : kCases) {
    const auto w = test::random_floats(size_t(m * k), 41);
    const auto x = test::random_floats(size_t(n * k), 42);
    const LutWeights lw = LutWeights::pack(quantize_rtn_ref(w.data(), m, k, fmt_of(c)));
    std::vector<std::vector<float>> out;
    for (Isa isa : test::supported_isas()) {
      test::ScopedIsa cap(isa);
      std::vector<float> y(size_t(n * m));
      mpgemm(lw, x.data(), n, k, y.data(), m, LutMode::Fast, MpGemmPath::Lut);  // Auto may take the int8 path
      out.push_back(y);
    }
    for (size_t i = 1; i < out.size(); ++i) EXPECT_EQ(out[i], out[0]) << name_of(c, m, k, n) << " path " << i;
  }
}

TEST_P(MpGemmIsa, DequantBaselineMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  set_num_threads(2);
  for (const auto& c : kCases)
    for (const auto& s : kShapes)
      for (int64_t n : {1, 6}) {
        const auto w = test::random_floats(size_t(s.m * s.k), 51);
        const auto x = test::random_floats(size_t(n * s.k), 52);
        const QuantMatrix q = quantize_rtn_ref(w.data(), s.m, s.k, fmt_of(c));
        std::vector<float> ref(size_t(n * s.m)), y(ref.size(), NAN);
        mpgemm_ref(q, x.data(), n, s.k, ref.data(), s.m);
        dequant_gemm(DequantWeights::pack(q), x.data(), n, s.k, y.data(), s.m);
        EXPECT_LE(test::max_rel_err(y, ref), 1e-5) << chosen_kernel("mpgemm_dequant") << " " << name_of(c, s.m, s.k, n);
      }
}

TEST_P(MpGemmIsa, Int8PathMatchesReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& c : kCases) {
      if (c.group != 0 && c.group % 64 != 0) continue;  // the int8 path's precondition
      for (const auto& s : kShapes)
        for (int64_t n : {1, 17, 40}) {
          const auto w = test::random_floats(size_t(s.m * s.k), 81);
          const auto x = test::random_floats(size_t(n * s.k), 82);
          const QuantMatrix q = quantize_rtn_ref(w.data(), s.m, s.k, fmt_of(c));
          std::vector<float> ref(size_t(n * s.m)), y(ref.size(), NAN);
          mpgemm_ref(q, x.data(), n, s.k, ref.data(), s.m);
          mpgemm(LutWeights::pack(q), x.data(), n, s.k, y.data(), s.m, LutMode::Fast, MpGemmPath::Int8);
          // int8 activations (per-token scale): same documented bound as the int8 tables.
          EXPECT_LE(test::rel_l2(y, ref), s.m * n >= 16 ? 2e-2 : 5e-2) << chosen_kernel("mpgemm_int8") << " " << name_of(c, s.m, s.k, n);
        }
    }
  }
  const auto w = test::random_floats(64 * 96, 1);
  QuantFormat f;
  f.group = 32;
  std::vector<float> x(96), y(64);
  EXPECT_THROW(mpgemm(LutWeights::pack(quantize_rtn_ref(w.data(), 64, 96, f)), x.data(), 1, 96, y.data(), 64,
                      LutMode::Fast, MpGemmPath::Int8), Error);
  EXPECT_THROW(mpgemm(LutWeights::pack(quantize_rtn_ref(w.data(), 64, 96, QuantFormat{})), x.data(), 1, 96, y.data(), 64,
                      LutMode::Exact, MpGemmPath::Int8), Error);
}

// Every vector int8 variant (AVX2, AVX-VNNI, AVX-512-VNNI, AMX: each cap that changes the choice)
// computes the scalar twin's integer sums from the same int8 activations: outputs agree to the
// rounding of the float epilogue (1e-5 of max|y|), on odd shapes, 1-8 bits (8 bits: AVX2's split
// of the codes), symmetric, asymmetric, ternary, one group per row, 1 and 2 threads.
TEST(MpGemm, Int8VariantsMatchScalarTwin) {
  struct Int8Case { int bits; bool sym; bool ternary; int group; DType scale; };
  const Int8Case cases[] = {{1, true, false, 128, DType::F32}, {2, true, false, 128, DType::F32}, {4, false, false, 64, DType::F16}, {3, true, false, 0, DType::F32},
                            {1, true, true, 64, DType::F16},  {7, false, false, 128, DType::F32}, {8, false, false, 64, DType::F16},
                            {8, true, false, 0, DType::F32}};
  const Shape3 shapes[] = {{37, 4095}, {1, 257}, {33, 64}, {7, 31}, {64, 512}};
  std::vector<std::string> seen;
  for (const std::string& cap : isa_cap_names()) {
    test::ScopedIsa scoped(cap);
    const std::string kernel = chosen_kernel("mpgemm_int8");
    if (kernel.find("__ref") != std::string::npos || std::find(seen.begin(), seen.end(), kernel) != seen.end()) continue;
    seen.push_back(kernel);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (const auto& ic : cases)
        for (const auto& s : shapes)
          for (int64_t n : {1, 5, 7, 13}) {
            const Case c{ic.bits, ic.sym, ic.ternary, ic.group, ic.scale};
            const auto w = test::random_floats(size_t(s.m * s.k), 71);
            const auto x = test::random_floats(size_t(n * s.k), 72);
            const LutWeights lw = LutWeights::pack(quantize_rtn_ref(w.data(), s.m, s.k, fmt_of(c)));
            if (!mpgemm_int8_supported(lw)) continue;
            std::vector<float> ref(size_t(n * s.m)), y(ref.size(), NAN);
            kernels::qgemm_qbg_i8_f32__ref(lw, x.data(), n, s.k, ref.data(), s.m);
            mpgemm(lw, x.data(), n, s.k, y.data(), s.m, LutMode::Fast, MpGemmPath::Int8);
            EXPECT_LE(test::max_rel_err(y, ref), 1e-5) << kernel << " " << threads << " thr " << name_of(c, s.m, s.k, n);
          }
    }
  }
  set_num_threads(2);
  EXPECT_FALSE(seen.empty());
}

// The low-rank branch added in the kernel's output tiles equals the product plus the branch
// computed separately, on the LUT path (decode and prefill blocks) and the int8 path, odd shapes.
TEST_P(MpGemmIsa, LowRankEpilogueEqualsSeparateBranch) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  const int64_t m = 37, k = 256, rank = 5;
  QuantFormat f;
  f.bits = 4;
  f.group = 64;
  const auto w = test::random_floats(size_t(m * k), 91);
  const LutWeights lw = LutWeights::pack(quantize_rtn_ref(w.data(), m, k, f));
  const auto lt = test::random_floats(size_t(rank * m), 92);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int64_t n : {1, 3, 9, 40})
      for (MpGemmPath path : {MpGemmPath::Lut, MpGemmPath::Int8}) {
        if (path == MpGemmPath::Int8 && !mpgemm_int8_supported(lw)) continue;
        const auto x = test::random_floats(size_t(n * k), 93);
        const auto hh = test::random_floats(size_t(n * (rank + 2)), 94);  // row stride rank + 2
        std::vector<float> plain(size_t(n * m)), fused(plain.size(), NAN);
        mpgemm(lw, x.data(), n, k, plain.data(), m, LutMode::Fast, path);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t o = 0; o < m; ++o) {
            double acc = 0;
            for (int64_t j = 0; j < rank; ++j) acc += double(hh[size_t(i * (rank + 2) + j)]) * lt[size_t(j * m + o)];
            plain[size_t(i * m + o)] += float(acc);
          }
        const LowRankEpilogue lr{hh.data(), rank + 2, lt.data(), rank};
        mpgemm(lw, x.data(), n, k, fused.data(), m, LutMode::Fast, path, &lr);
        for (size_t i = 0; i < plain.size(); ++i)
          ASSERT_NEAR(fused[i], plain[i], 1e-4f * (1.f + std::fabs(plain[i]))) << "n=" << n << " i=" << i;
      }
  }
  std::vector<float> x(k), y(m);
  const LowRankEpilogue bad{nullptr, rank, lt.data(), rank};
  EXPECT_THROW(mpgemm(lw, x.data(), 1, k, y.data(), m, LutMode::Fast, MpGemmPath::Auto, &bad), Error);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, MpGemmIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(MpGemm, ArbitraryPrecisionPlanes) {
  for (int bits = 5; bits <= 8; ++bits) {
    QuantFormat f;
    f.bits = bits;
    f.group = 32;
    f.symmetric = bits % 2 == 0;
    const int64_t m = 20, k = 130, n = 2;
    const auto w = test::random_floats(size_t(m * k), 61), x = test::random_floats(size_t(n * k), 62);
    const QuantMatrix q = quantize_rtn_ref(w.data(), m, k, f);
    std::vector<float> ref(size_t(n * m)), y(ref.size());
    mpgemm_ref(q, x.data(), n, k, ref.data(), m);
    mpgemm(LutWeights::pack(q), x.data(), n, k, y.data(), m, LutMode::Exact);
    EXPECT_LE(test::max_rel_err(y, ref), 1e-5) << bits;
    mpgemm(LutWeights::pack(q), x.data(), n, k, y.data(), m, LutMode::Fast);
    EXPECT_LE(test::rel_l2(y, ref), 2e-2) << bits;
  }
}

TEST(MpGemm, Bf16Activations) {
  const int64_t m = 24, k = 200, n = 3;
  const auto w = test::random_floats(size_t(m * k), 71);
  const auto xb = test::to_bf16(test::random_floats(size_t(n * k), 72));
  std::vector<float> xf(xb.size());
  for (size_t i = 0; i < xb.size(); ++i) xf[i] = bf16_to_f32_scalar(xb[i]);
  const QuantMatrix q = quantize_rtn_ref(w.data(), m, k, QuantFormat{});
  std::vector<float> ref(size_t(n * m)), y(ref.size());
  mpgemm_ref(q, xf.data(), n, k, ref.data(), m);
  mpgemm_bf16(LutWeights::pack(q), xb.data(), n, k, y.data(), m, LutMode::Exact);
  EXPECT_LE(test::max_rel_err(y, ref), 1e-5);
}

}  // namespace tz
