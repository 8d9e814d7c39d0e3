// The llama.cpp-block GEMM: for every weight type, on random blocks (every bit pattern of codes and
// sub-scales; sane f16 scales), the scalar oracle equals the dequantized product exactly when the
// activations are exact int8 levels, stays within int8-activation error on Gaussian activations,
// and every ISA path equals the oracle to f32 rounding, on odd shapes (m = 1, 7, 33; n up to 13).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/ggml/ggml_gemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/ggml_gemm.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

struct TypeCase {
  uint32_t type;
  std::vector<int> f16_fields;  // byte offsets of the block's f16 scales
};
const TypeCase kTypes[] = {
    {io::kGgmlQ4_0, {0}},    {io::kGgmlQ4_1, {0, 2}}, {io::kGgmlQ5_0, {0}},    {io::kGgmlQ5_1, {0, 2}},
    {io::kGgmlQ8_0, {0}},    {io::kGgmlIQ4_NL, {0}},  {io::kGgmlQ2_K, {80, 82}}, {io::kGgmlQ3_K, {108}},
    {io::kGgmlQ4_K, {0, 2}}, {io::kGgmlQ5_K, {0, 2}}, {io::kGgmlQ6_K, {208}},  {io::kGgmlIQ4_XS, {0}},
    {io::kGgmlTQ1_0, {52}},  {io::kGgmlTQ2_0, {64}},
};

std::string type_name(uint32_t t) { return io::ggml_type_info(t)->name; }

// Random blocks: random bytes, then each f16 scale set to a random value of magnitude ~1e-2.
GgmlMatrix random_matrix(const TypeCase& c, int64_t rows, int64_t cols, uint32_t seed) {
  const auto* ti = io::ggml_type_info(c.type);
  std::mt19937 rng(seed);
  const size_t nblocks = size_t(rows * cols) / ti->block_values;
  std::vector<uint8_t> bytes(nblocks * ti->block_bytes);
  for (auto& b : bytes) b = uint8_t(rng());
  std::uniform_real_distribution<float> mag(0.002f, 0.02f);
  for (size_t i = 0; i < nblocks; ++i)
    for (int off : c.f16_fields) {
      const uint16_t h = f32_to_f16_scalar((rng() & 1 ? -1.f : 1.f) * mag(rng));
      std::memcpy(&bytes[i * ti->block_bytes + size_t(off)], &h, 2);
    }
  return GgmlMatrix::from_blocks(c.type, rows, cols, bytes.data(), "test");
}

// y = x · Ŵᵀ in double from the dequantized weights.
std::vector<float> exact(const GgmlMatrix& w, const std::vector<float>& x, int64_t n) {
  std::vector<float> wd(size_t(w.rows * w.cols));
  w.dequantize(wd.data());
  std::vector<float> y(size_t(n * w.rows));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0;
      for (int64_t i = 0; i < w.cols; ++i) s += double(x[size_t(t * w.cols + i)]) * double(wd[size_t(r * w.cols + i)]);
      y[size_t(t * w.rows + r)] = float(s);
    }
  return y;
}

int64_t cols_for(uint32_t type, int variant) {
  const int64_t bv = io::ggml_type_info(type)->block_values;
  // 32-value types also get rows that are not whole 256-value units (the kernels' tail).
  return bv == 32 ? (variant == 0 ? 32 * 13 : 32 * 40) : 256 * (variant == 0 ? 1 : 3);
}

TEST(GgmlGemm, OracleIsExactOnInt8LevelsAndCloseOnGaussian) {
  for (const auto& c : kTypes)
    for (int v = 0; v < 2; ++v) {
      const int64_t m = 7, k = cols_for(c.type, v), n = 3;
      const GgmlMatrix w = random_matrix(c, m, k, 11 + v);
      // Integer activations with ±127 in every 32-block: quantization to int8 is the identity.
      std::mt19937 rng(5);
      std::vector<float> xi(size_t(n * k));
      for (size_t i = 0; i < xi.size(); ++i) xi[i] = i % 32 == 5 ? (i % 64 == 5 ? 127.f : -127.f) : float(int(rng() % 255) - 127);
      std::vector<float> y(size_t(n * m));
      ggml_gemm_ref(w, xi.data(), n, k, y.data(), m);
      EXPECT_LT(test::max_rel_err(y, exact(w, xi, n)), 2e-6) << type_name(c.type) << " k=" << k;
      // Gaussian activations: the int8 quantization's error only (relative L2; ~6e-3 with one
      // activation scale per 32 values, ~1.2e-2 with q8_K's one per 256).
      const auto xg = test::random_floats(size_t(n * k), 7);
      ggml_gemm_ref(w, xg.data(), n, k, y.data(), m);
      EXPECT_LT(test::rel_l2(y, exact(w, xg, n)), 2e-2) << type_name(c.type) << " k=" << k;
    }
}

// The vector activation quantizers give the reference's codes and scales bit for bit (llama.cpp's
// rounding), on ragged rows (k = 4095: a partial last block, zeros past k) and on ties.
TEST(GgmlGemm, VectorActQuantizersEqualTheReference) {
  if (!cpu_info().has(isa_level_features(Isa::Avx512) | kAvx512Vnni)) GTEST_SKIP() << "CPU lacks AVX-512 VNNI";
  using kernels::QuantizeActsFn;
  struct Case {
    const char* name;
    QuantizeActsFn ref, vec;
    bool k256;  // q8_K: k whole 256-blocks
  };
  const kernels::ActQuantizers &r = kernels::kActQuantizersRef, &v = kernels::kActQuantizersAvx512;
  for (const Case& c : {Case{"q8_0", r.q8_0, v.q8_0, false}, Case{"q8_1", r.q8_1, v.q8_1, false}, Case{"q8_K", r.q8_k, v.q8_k, true}})
    for (int64_t k : {256, 4095, 4096}) {
      if (c.k256 && k % 256 != 0) continue;
      const int64_t k_pad = kernels::ggml_k_pad(k);
      auto x = test::random_floats(size_t(k), uint32_t(k));
      for (int64_t i = 0; i < k; i += 37) x[size_t(i)] = 0.5f * float(i % 7);  // ties at x·id = n + 0.5 are likely near
      for (int64_t i = 64; i < 96; ++i) x[size_t(i)] = 0.f;                    // an all-zero block
      const size_t e = k > 300 ? 260 : 10;  // the block's largest magnitude twice, signs opposite: the first one wins
      x[e] = -9.5f, x[e + 1] = 9.5f;
      std::vector<int8_t> q0(size_t(k_pad), 1), q1(size_t(k_pad), 2);
      std::vector<float> d0(size_t(k_pad / 16), 1), d1(size_t(k_pad / 16), 2), s0(d0), s1(d1);
      c.ref(x.data(), k, k_pad, q0.data(), d0.data(), s0.data());
      c.vec(x.data(), k, k_pad, q1.data(), d1.data(), s1.data());
      EXPECT_EQ(q0, q1) << c.name << " k=" << k;
      EXPECT_EQ(d0, d1) << c.name << " k=" << k;
      EXPECT_EQ(s0, s1) << c.name << " k=" << k;
    }
}

class GgmlGemmIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(GgmlGemmIsa, MatchesOracle) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& c : kTypes)
      for (int64_t m : {1, 7, 33})
        for (int64_t n : {1, 3, 8, 13}) {
          const int64_t k = cols_for(c.type, int((m / 2) % 2));
          const GgmlMatrix w = random_matrix(c, m, k, uint32_t(m * 100 + n));
          const auto x = test::random_floats(size_t(n * (k + 5)), uint32_t(n));
          std::vector<float> y(size_t(n * (m + 2)), NAN), ref(size_t(n * (m + 2)), NAN);
          ggml_gemm(w, x.data(), n, k + 5, y.data(), m + 2);  // leading dimensions larger than the shape
          ggml_gemm_ref(w, x.data(), n, k + 5, ref.data(), m + 2);
          std::vector<float> yy, rr;
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < m; ++r) yy.push_back(y[size_t(t * (m + 2) + r)]), rr.push_back(ref[size_t(t * (m + 2) + r)]);
          EXPECT_LT(test::max_rel_err(yy, rr), 1e-5) << type_name(c.type) << " m=" << m << " n=" << n << " k=" << k << " threads=" << threads;
        }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, GgmlGemmIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(GgmlGemm, RefusesWhatItCannotRun) {
  const std::vector<uint8_t> bytes(1000, 0);
  EXPECT_THROW(GgmlMatrix::from_blocks(io::kGgmlF16, 2, 32, bytes.data(), "t"), Error);
  EXPECT_THROW(GgmlMatrix::from_blocks(io::kGgmlQ4_K, 1, 200, bytes.data(), "t"), Error);  // not whole blocks
  try {
    GgmlMatrix::from_blocks(15 /* q8_K */, 1, 256, bytes.data(), "blk.0.attn_q.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q8_K"), std::string::npos) << e.what();
  }
  const GgmlMatrix w = GgmlMatrix::from_blocks(io::kGgmlQ8_0, 2, 32, bytes.data(), "t");
  std::vector<float> x(32), y(2);
  EXPECT_THROW(ggml_gemm(w, x.data(), 1, 16, y.data(), 2), Error);  // ldx < k
}

}  // namespace
}  // namespace tz
