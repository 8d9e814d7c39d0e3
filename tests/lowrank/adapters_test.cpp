// Factored operators and adapters: LowRankLinear equals the dense product of its reconstruction;
// LoRA apply equals the merged weight; merge/unmerge restores W within f32 rounding; DoRA,
// Block-LoRA, FLoRA, CP-LoRA deltas; the fused multi-adapter kernel on every ISA path equals the
// loop over adapters and a float64 reference on odd shapes; PEFT files round-trip; bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

std::vector<float> gauss(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

double rel(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) num += (a[i] - ref[i]) * (a[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

// y = x · Wᵀ in float64.
std::vector<double> linear64(const std::vector<float>& x, const std::vector<double>& w, int64_t n, int64_t out, int64_t in) {
  std::vector<double> y(size_t(n * out), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += double(x[size_t(t * in + i)]) * w[size_t(o * in + i)];
      y[size_t(t * out + o)] = s;
    }
  return y;
}

LoraAdapter random_lora(int64_t out, int64_t in, int64_t r, uint64_t seed) {
  return {r, float(2 * r), gauss(size_t(r * in), seed, 0.1f), gauss(size_t(out * r), seed + 1, 0.1f)};
}

}  // namespace

TEST(LowRank, OperatorEqualsDenseReconstruction) {
  set_num_threads(2);
  for (auto [out, in, r, n] : {std::tuple{64, 48, 8, 5}, {7, 4095, 3, 1}, {130, 33, 33, 17}}) {
    const auto w = gauss(size_t(out * in), uint64_t(out + in));
    const auto svd = svd_truncated(w.data(), out, in, RankSpec::of_rank(r));
    const auto op = LowRankLinear::from_svd(svd);
    const auto wr = svd.reconstruct();
    const auto x = gauss(size_t(n * in), 3);
    std::vector<float> y(size_t(n * out));
    op.apply(x.data(), n, y.data());
    EXPECT_LE(rel(y, linear64(x, std::vector<double>(wr.begin(), wr.end()), n, out, in)), 1e-5);
    const auto d = op.dense();
    EXPECT_LE(relative_error(wr.data(), d.data(), d.size()), 1e-5);
    EXPECT_DOUBLE_EQ(op.flops(n), 2.0 * n * r * (in + out));
  }
}

TEST(Lora, ApplyMergeUnmerge) {
  const int64_t out = 37, in = 129, r = 4, n = 6;
  auto w = gauss(size_t(out * in), 5);
  const auto w0 = w;
  const auto ad = random_lora(out, in, r, 7);
  const auto x = gauss(size_t(n * in), 9);
  std::vector<float> y(size_t(n * out));
  lora_apply(w.data(), out, in, ad, x.data(), n, y.data());
  // Reference: the merged weight in float64.
  std::vector<double> wm(size_t(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double s = 0;
      for (int64_t j = 0; j < r; ++j) s += double(ad.b[size_t(o * r + j)]) * double(ad.a[size_t(j * in + i)]);
      wm[size_t(o * in + i)] = double(w[size_t(o * in + i)]) + double(ad.scale()) * s;
    }
  EXPECT_LE(rel(y, linear64(x, wm, n, out, in)), 1e-5);
  lora_merge(w.data(), out, in, ad);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], wm[i], 1e-6 * (1 + std::abs(wm[i])));
  lora_unmerge(w.data(), out, in, ad);
  for (size_t i = 0; i < w.size(); ++i) {
    const double bound = std::ldexp(1.0, -24) * (std::abs(w0[i]) + std::abs(wm[i] - w0[i])) * 2;
    EXPECT_LE(std::abs(double(w[i]) - double(w0[i])), bound) << i;
  }
  // A zero B is a no-op, bit for bit.
  LoraAdapter zero = ad;
  std::fill(zero.b.begin(), zero.b.end(), 0.f);
  auto w2 = w0;
  lora_merge(w2.data(), out, in, zero);
  EXPECT_EQ(w2, w0);
}

// LoRA on a 4-bit base: the mpGEMM product plus the adapter, against the dequantized base in
// float64 (the mpGEMM fast mode's own bound applies to the base part).
TEST(Lora, OnLowBitBase) {
  set_num_threads(2);
  const int64_t out = 48, in = 256, n = 3;
  const auto w = gauss(size_t(out * in), 31);
  QuantFormat fmt;
  fmt.bits = 4;
  fmt.group = 64;
  const auto q = quantize_rtn_ref(w.data(), out, in, fmt);
  const auto lw = LutWeights::pack(q);
  std::vector<float> wd(size_t(out * in));
  dequantize_ref(q, wd.data());
  const auto ad = random_lora(out, in, 8, 33);
  const auto x = gauss(size_t(n * in), 34);
  std::vector<float> y(size_t(n * out)), ref(size_t(n * out));
  lora_apply(lw, ad, x.data(), n, y.data());
  lora_apply(wd.data(), out, in, ad, x.data(), n, ref.data());
  EXPECT_LE(rel(y, std::vector<double>(ref.begin(), ref.end())), 1e-2);  // fast-mode LUT (int8 tables)
  AdapterBank bank(out, in);
  bank.add(ad);
  const std::vector<int32_t> ids{0, -1, 0};
  std::vector<float> yb(size_t(n * out));
  bank.apply_with_base(lw, x.data(), n, ids.data(), yb.data());
  std::vector<float> base(size_t(n * out));
  mpgemm(lw, x.data(), n, in, base.data(), out);
  for (int64_t o = 0; o < out; ++o) EXPECT_EQ(yb[size_t(out + o)], base[size_t(out + o)]);  // row 1: base only
  for (int64_t o = 0; o < out; ++o) EXPECT_NEAR(yb[size_t(o)], y[size_t(o)], 1e-4 * (1 + std::abs(y[size_t(o)])));
  AdapterBank wrong(out + 1, in);
  EXPECT_THROW(wrong.apply_with_base(lw, x.data(), n, ids.data(), yb.data()), Error);
}

// Removing an adapter frees its weights and leaves the others' ids and results as they were, for
// both storages; a row naming the removed one is an error; new adapters get new ids.
TEST(Lora, AdapterBankRemoveKeepsTheOthers) {
  const int64_t out = 40, in = 72, n = 6;
  const auto x = gauss(size_t(n * in), 41);
  for (DType storage : {DType::F32, DType::BF16}) {
    AdapterBank bank(out, in, storage);
    std::vector<LoraAdapter> ads = {random_lora(out, in, 4, 42), random_lora(out, in, 8, 43), random_lora(out, in, 2, 44)};
    for (const auto& a : ads) bank.add(a);
    const std::vector<int32_t> ids{0, 2, -1, 2, 0, 0};
    std::vector<float> before(size_t(n * out), 0.f), after(size_t(n * out), 0.f), loop(size_t(n * out), 0.f);
    bank.apply(x.data(), n, ids.data(), before.data());
    bank.remove(1);
    bank.apply(x.data(), n, ids.data(), after.data());
    bank.apply_loop(x.data(), n, ids.data(), loop.data());
    EXPECT_EQ(after, before);
    EXPECT_LE(rel(loop, std::vector<double>(before.begin(), before.end())), 1e-5);
    const std::vector<int32_t> removed{1};
    EXPECT_THROW(bank.apply(x.data(), 1, removed.data(), after.data()), Error);
    EXPECT_THROW(bank.remove(1), Error);
    EXPECT_EQ(bank.add(ads[1]), 3);
    bank.remove(0);
    const std::vector<int32_t> ids2{3, 2, -1, 3, 2, 2};
    std::vector<float> y(size_t(n * out), 0.f), ref(size_t(n * out), 0.f);
    bank.apply(x.data(), n, ids2.data(), y.data());
    AdapterBank fresh(out, in, storage);
    fresh.add(ads[1]);
    fresh.add(ads[2]);
    const std::vector<int32_t> ids3{0, 1, -1, 0, 1, 1};
    fresh.apply(x.data(), n, ids3.data(), ref.data());
    EXPECT_EQ(y, ref);
  }
}

TEST(Lora, DoraBlockFloraCp) {
  const int64_t out = 12, in = 20, r = 3, n = 4;
  const auto w = gauss(size_t(out * in), 11);
  const auto x = gauss(size_t(n * in), 12);
  // DoRA at init with B = 0 is the base layer; with B != 0 it equals its merged weight.
  auto lz = random_lora(out, in, r, 13);
  std::fill(lz.b.begin(), lz.b.end(), 0.f);
  const auto d0 = DoraAdapter::init(w.data(), out, in, lz);
  const auto m0 = dora_merged(w.data(), out, in, d0);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(m0[i], w[i], 1e-6);
  auto d1 = DoraAdapter::init(w.data(), out, in, random_lora(out, in, r, 14));
  d1.magnitude[3] *= 2;
  const auto m1 = dora_merged(w.data(), out, in, d1);
  std::vector<float> y(size_t(n * out));
  dora_apply(w.data(), out, in, d1, x.data(), n, y.data());
  EXPECT_LE(rel(y, linear64(x, std::vector<double>(m1.begin(), m1.end()), n, out, in)), 1e-5);
  for (int64_t o = 0; o < out; ++o) {  // merged rows have the requested magnitude
    double s = 0;
    for (int64_t i = 0; i < in; ++i) s += double(m1[size_t(o * in + i)]) * m1[size_t(o * in + i)];
    EXPECT_NEAR(std::sqrt(s), d1.magnitude[size_t(o)], 1e-5 * d1.magnitude[size_t(o)]);
  }
  // Block-LoRA: apply equals W + ΔW; the shared A makes ΔW's blocks share a row space.
  BlockLoraAdapter bl{r, 4, 8.f, gauss(size_t(r * in / 4), 15), {}};
  for (int j = 0; j < 4; ++j) bl.b.push_back(gauss(size_t(out * r), 16 + j));
  const auto dw = block_lora_delta(out, in, bl);
  std::vector<double> wb(w.begin(), w.end());
  for (size_t i = 0; i < wb.size(); ++i) wb[i] += dw[i];
  block_lora_apply(w.data(), out, in, bl, x.data(), n, y.data());
  EXPECT_LE(rel(y, linear64(x, wb, n, out, in)), 1e-5);
  // FLoRA / CP-LoRA: deltas are the scaled reconstructions of the factorizations.
  DenseTensor<float> t{{4, 5, 6}, gauss(120, 17)};
  const auto tk = tucker(t, {2, 2, 2});
  const auto fd = flora_delta(tk, 0.5f);
  const auto tr = tk.reconstruct();
  for (size_t i = 0; i < fd.size(); ++i) EXPECT_FLOAT_EQ(fd[i], 0.5f * tr.data[i]);
  const auto cp = cp_als(t, 2, 50);
  const auto cd = cp_lora_delta(cp, 2.f);
  const auto cr = cp.reconstruct();
  for (size_t i = 0; i < cd.size(); ++i) EXPECT_FLOAT_EQ(cd[i], 2.f * cr.data[i]);
}

class AdapterBankIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(AdapterBankIsa, FusedEqualsLoopAndReference) {
  if (int(GetParam()) > int(cpu_info().max_isa)) GTEST_SKIP() << "CPU lacks " << isa_name(GetParam());
  test::ScopedIsa cap(GetParam());
  for (int threads : {1, 2})
  for (DType storage : {DType::F32, DType::BF16}) {
    set_num_threads(threads);
    for (auto [out, in, n] : {std::tuple{7, 4095, 9}, {1030, 33, 64}, {16, 16, 1}}) {
      AdapterBank bank(out, in, storage);
      std::vector<LoraAdapter> ads;
      for (int64_t r : {1, 3, 16, 5}) ads.push_back(random_lora(out, in, r, uint64_t(r * 31 + out)));
      for (const auto& a : ads) bank.add(a);
      if (storage == DType::BF16)  // the reference uses the rounded weights the bank holds
        for (auto& a : ads) {
          for (float& v : a.a) v = bf16_to_f32_scalar(f32_to_bf16_scalar(v));
          for (float& v : a.b) v = bf16_to_f32_scalar(f32_to_bf16_scalar(v));
        }
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) ids[size_t(t)] = int32_t(t % 5) - 1;  // -1 = no adapter, repeats
      const auto x = gauss(size_t(n * in), 77);
      const auto y0 = gauss(size_t(n * out), 78);
      auto yf = y0, yl = y0;
      bank.apply(x.data(), n, ids.data(), yf.data());
      bank.apply_loop(x.data(), n, ids.data(), yl.data());
      std::vector<double> ref(y0.begin(), y0.end());
      for (int64_t t = 0; t < n; ++t) {
        if (ids[size_t(t)] < 0) continue;
        const auto& a = ads[size_t(ids[size_t(t)])];
        for (int64_t o = 0; o < out; ++o) {
          double s = 0;
          for (int64_t j = 0; j < a.rank; ++j) {
            double h = 0;
            for (int64_t i = 0; i < in; ++i) h += double(a.a[size_t(j * in + i)]) * x[size_t(t * in + i)];
            s += h * a.b[size_t(o * a.rank + j)];
          }
          ref[size_t(t * out + o)] += a.scale() * s;
        }
      }
      // Relative to the adapter term's size: f32 dot products over `in` terms.
      for (size_t i = 0; i < ref.size(); ++i) {
        const double tol = 2e-6 * std::sqrt(double(in)) * (1 + std::abs(ref[i]));
        ASSERT_NEAR(yf[i], ref[i], tol) << "fused, element " << i;
        ASSERT_NEAR(yl[i], ref[i], tol) << "loop, element " << i;
      }
      for (int64_t t = 0; t < n; ++t)  // rows without an adapter are untouched
        if (ids[size_t(t)] < 0)
          for (int64_t o = 0; o < out; ++o) ASSERT_EQ(yf[size_t(t * out + o)], y0[size_t(t * out + o)]);
    }
  }
  const std::string kname = AdapterBank(4, 4).kernel();
  EXPECT_NE(kname.find(GetParam() == Isa::Scalar ? "__ref" : GetParam() == Isa::Avx2 ? "__avx2" : "__avx512"),
            std::string::npos)
      << kname;
}
INSTANTIATE_TEST_SUITE_P(AllIsas, AdapterBankIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(Peft, RoundTripAndErrors) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tz_peft_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  PeftAdapter ad;
  ad.r = 4;
  ad.lora_alpha = 8;
  ad.target_modules = {"q_proj", "v_proj"};
  ad.modules["model.layers.0.self_attn.q_proj"] = random_lora(24, 16, 4, 1);
  ad.modules["model.layers.0.self_attn.v_proj"] = random_lora(8, 16, 4, 2);
  for (auto& [k, v] : ad.modules) v.alpha = 8;
  write_peft_adapter(dir.string(), ad);
  const auto back = read_peft_adapter(dir.string());
  EXPECT_EQ(back.r, 4);
  EXPECT_EQ(back.lora_alpha, 8);
  EXPECT_EQ(back.target_modules, ad.target_modules);
  ASSERT_EQ(back.modules.size(), 2u);
  for (const auto& [k, v] : ad.modules) {
    const auto& b = back.modules.at(k);
    EXPECT_EQ(b.rank, v.rank);
    EXPECT_EQ(b.a, v.a);
    EXPECT_EQ(b.b, v.b);
    EXPECT_FLOAT_EQ(b.scale(), 2.f);
  }
  // A missing config, broken JSON, a missing partner tensor: clear errors naming the file.
  const fs::path bad = dir / "bad";
  fs::create_directories(bad);
  EXPECT_THROW(read_peft_adapter(bad.string()), Error);
  { std::ofstream(bad / "adapter_config.json") << "{ not json"; }
  try {
    read_peft_adapter(bad.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Lora, BadInput) {
  const auto w = gauss(12, 1);
  LoraAdapter ad = random_lora(3, 4, 2, 2);
  ad.a.pop_back();
  EXPECT_THROW(lora_merge(const_cast<float*>(w.data()), 3, 4, ad), Error);
  ad = random_lora(3, 4, 2, 2);
  ad.b[1] = NAN;
  AdapterBank bank(3, 4);
  EXPECT_THROW(bank.add(ad), Error);
  bank.add(random_lora(3, 4, 2, 3));
  const std::vector<int32_t> ids{0, 1};
  std::vector<float> x(8, 1.f), y(6, 0.f);
  EXPECT_THROW(bank.apply(x.data(), 2, ids.data(), y.data()), Error);  // adapter 1 does not exist
  EXPECT_THROW(LowRankLinear(3, 4, 2, std::vector<float>(5), std::vector<float>(8)), Error);
}

}  // namespace tz

namespace tz {

// Tucker-, CP- and MPO-factored layers equal the dense product of their reconstruction, whatever
// contraction order the cost model picks (both MPO sweep directions are exercised).
TEST(FactoredLinear, EqualsDenseReconstruction) {
  set_num_threads(2);
  const int64_t n = 5;
  bool saw_l2r = false, saw_r2l = false;
  for (auto [om, im] : {std::pair<std::vector<int64_t>, std::vector<int64_t>>{{4, 6}, {5, 3}},
                        {{2, 3, 4}, {3, 2, 5}},
                        {{16, 2}, {2, 16}},
                        {{2, 16}, {16, 2}}}) {
    int64_t out = 1, in = 1;
    for (int64_t v : om) out *= v;
    for (int64_t v : im) in *= v;
    const auto w = gauss(size_t(out * in), uint64_t(out * 3 + in));
    const auto x = gauss(size_t(n * in), 8);
    DenseTensor<float> t;
    t.shape = om;
    t.shape.insert(t.shape.end(), im.begin(), im.end());
    t.data = w;
    std::vector<int64_t> ranks;
    for (int64_t s : t.shape) ranks.push_back(std::max<int64_t>(1, s / 2));
    const auto check = [&](const FactoredLinear& f, const std::vector<float>& dense) {
      std::vector<float> y(size_t(n * out));
      f.apply(x.data(), n, y.data());
      EXPECT_LE(rel(y, linear64(x, std::vector<double>(dense.begin(), dense.end()), n, out, in)), 1e-5) << f.plan();
      EXPECT_GT(f.flops(n), 0);
    };
    const auto tk = tucker(t, ranks, 2);
    const auto ft = FactoredLinear::from_tucker(tk, om, im);
    check(ft, tk.reconstruct().data);
    const auto cp = cp_als(t, 3, 5);
    check(FactoredLinear::from_cp(cp, om, im), cp.reconstruct().data);
    const auto mpo = mpo_from_matrix(w.data(), om, im, 3, 0);
    const auto fm = FactoredLinear::from_mpo(mpo, om, im);
    check(fm, mpo_to_matrix(mpo, om, im));
    (fm.plan().find("right-to-left") != std::string::npos ? saw_r2l : saw_l2r) = true;
  }
  EXPECT_TRUE(saw_l2r);
  EXPECT_TRUE(saw_r2l);
  // The cost model: a Tucker layer of small ranks is far cheaper than the dense product.
  DenseTensor<float> big{{8, 8, 8, 8}, gauss(4096, 3)};
  const auto f = FactoredLinear::from_tucker(tucker(big, {2, 2, 2, 2}, 1), {8, 8}, {8, 8});
  EXPECT_LT(f.flops(1), f.dense_flops(1) / 10);
}

}  // namespace tz
