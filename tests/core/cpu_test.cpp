#include <gtest/gtest.h>

#include "tensorzip/cpu.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tests/test_util.h"

namespace tz {

TEST(Cpu, LevelsAreConsistent) {
  const CpuInfo& c = cpu_info();
  EXPECT_TRUE(c.has(isa_level_features(c.max_isa)));
  if (c.max_isa == Isa::Amx) EXPECT_TRUE(c.amx_permission);
  EXPECT_FALSE(c.vendor.empty());
}

TEST(Cpu, IsaNames) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx}) EXPECT_EQ(isa_from_name(isa_name(i)), i);
  EXPECT_THROW(isa_from_name("avx9000"), Error);
}

TEST(Cpu, CapMasksFeaturesAndSwitchesKernels) {
  std::vector<std::string> chosen;
  for (Isa isa : test::supported_isas()) {
    test::ScopedIsa cap(isa);
    EXPECT_EQ(cpu_info().active_isa, isa);
    if (isa == Isa::Scalar) EXPECT_EQ(active_features(), 0u);
    if (int(isa) < int(Isa::Avx512)) EXPECT_FALSE(active_features() & kAvx512F);
    chosen.push_back(chosen_kernel("gemm_bf16"));
    if (isa == Isa::Scalar) {
      EXPECT_EQ(chosen_kernel("gemm_f32"), "gemm_f32_f32_f32__ref");
      EXPECT_EQ(chosen_kernel("convert_f32_bf16"), "convert_f32_bf16__ref");
    }
  }
  // Every supported level picks a different bf16 GEMM kernel.
  for (size_t i = 1; i < chosen.size(); ++i) EXPECT_NE(chosen[i], chosen[i - 1]);
  EXPECT_THROW(chosen_kernel("no_such_op"), Error);
}

// The finer caps: each lets through only its level's features and its own extensions, so a
// variant that needs an extension is skipped below it (avx2 hides AVX-VNNI, avx512f hides
// AVX-512-VNNI/VBMI/BF16, avx512vnni hides BF16), and the int8 prefill kernel follows.
TEST(Cpu, FinerCapsMaskExtensions) {
  const std::vector<std::string> names = isa_cap_names();
  ASSERT_EQ(names.front(), "scalar");
  ASSERT_EQ(names.back(), "amx");
  for (const std::string& name : names) {
    test::ScopedIsa cap(name);
    const uint32_t f = active_features();
    EXPECT_EQ(cpu_info().cap, name);
    EXPECT_EQ(f & ~cpu_info().features, 0u) << name;  // never more than the machine has
    if (name == "avx2") EXPECT_FALSE(f & (kAvxVnni | kAvx512F)) << name;
    if (name == "avxvnni") EXPECT_FALSE(f & kAvx512F) << name;
    if (name == "avx512f") EXPECT_FALSE(f & (kAvx512Vnni | kAvx512Vbmi | kAvx512Bf16)) << name;
    if (name == "avx512vnni") EXPECT_FALSE(f & kAvx512Bf16) << name;
    const std::string int8 = chosen_kernel("mpgemm_int8");
    if (name == "scalar") EXPECT_EQ(int8, "qgemm_qbg_i8_f32__ref");
    if (name == "avx2" && cpu_info().has(kAvx2)) EXPECT_EQ(int8, "qgemm_qbg_i8_f32_16x6__avx2");
    if (name == "avxvnni" && cpu_info().has(kAvxVnni)) EXPECT_EQ(int8, "qgemm_qbg_i8_f32_16x6__avxvnni");
    if (name == "avx512vnni" && cpu_info().has(isa_level_features(Isa::Avx512) | kAvx512Vnni))
      EXPECT_EQ(int8, "qgemm_qbg_i8_f32_32x6__avx512vnni");
  }
  EXPECT_THROW(reset_isa_cap_for_testing(std::string("avx9000")), Error);
  reset_isa_cap_for_testing(Isa::Amx);
}

}  // namespace tz
