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

}  // namespace tz
