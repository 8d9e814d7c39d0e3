// Every ISA path of the f32 <-> bf16/f16 conversions against the scalar reference, bit for bit,
// on special values, every 16-bit pattern, random bit patterns and odd lengths / misaligned pointers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "tensorzip/convert.h"
#include "tests/test_util.h"

namespace tz {
namespace {

float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

bool half_is_nan(uint16_t h, bool bf) {
  return bf ? ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) : ((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
}

std::vector<float> interesting_floats() {
  std::vector<float> v = {0.f, -0.f, 1.f, -1.f, 65504.f, 65519.99f, 65520.f, -65520.f, 1e-8f, 6.1e-5f, 5.96e-8f,
                          2.98e-8f, 2.9802322e-8f, std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::min(),
                          from_bits(0x3f808000), from_bits(0x3f818000), from_bits(0x3f80a000), from_bits(0x7f800001),
                          from_bits(0xff812345), from_bits(0x33000000), from_bits(0x33000001), from_bits(0x387fe000),
                          from_bits(0x387ff000), from_bits(0x00400000), from_bits(0x7f7fffff)};
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) v.push_back(from_bits(rng()));
  return v;
}

void expect_same_half(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, bool bf, const char* isa) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (half_is_nan(want[i], bf)) {
      ASSERT_TRUE(half_is_nan(got[i], bf)) << isa << " i=" << i;
      ASSERT_EQ(got[i] & 0x8000, want[i] & 0x8000) << isa << " NaN sign, i=" << i;
    } else {
      ASSERT_EQ(got[i], want[i]) << isa << " i=" << i << std::hex << " want 0x" << want[i] << " got 0x" << got[i];
    }
  }
}

void expect_same_float(const std::vector<float>& got, const std::vector<float>& want, const char* isa) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      ASSERT_TRUE(std::isnan(got[i])) << isa << " i=" << i;
    } else {
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4), std::memcpy(&b, &want[i], 4);
      ASSERT_EQ(a, b) << isa << " i=" << i;
    }
  }
}

}  // namespace

TEST(Convert, ScalarF16KnownValues) {
  EXPECT_EQ(f32_to_f16_scalar(1.f), 0x3c00);
  EXPECT_EQ(f32_to_f16_scalar(-2.f), 0xc000);
  EXPECT_EQ(f32_to_f16_scalar(65504.f), 0x7bff);
  EXPECT_EQ(f32_to_f16_scalar(65520.f), 0x7c00);       // ties to even -> overflow to inf
  EXPECT_EQ(f32_to_f16_scalar(5.9604645e-8f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16_scalar(2.9802322e-8f), 0x0000);  // half of it ties to even (0)
  EXPECT_EQ(f16_to_f32_scalar(0x0001), 5.9604645e-8f);
  EXPECT_EQ(f16_to_f32_scalar(0x3555), 0.33325195f);
  EXPECT_EQ(f32_to_bf16_scalar(1.00390625f), 0x3f80);   // tie, even stays
  EXPECT_EQ(f32_to_bf16_scalar(1.01171875f), 0x3f82);   // tie, odd rounds up
  EXPECT_EQ(bf16_to_f32_scalar(0x4049), 3.140625f);
}

TEST(Convert, EveryIsaMatchesReference) {
  const auto src = interesting_floats();
  std::vector<uint16_t> want_bf(src.size()), want_h(src.size());
  for (size_t i = 0; i < src.size(); ++i) want_bf[i] = f32_to_bf16_scalar(src[i]), want_h[i] = f32_to_f16_scalar(src[i]);
  std::vector<uint16_t> all16(65536);
  for (uint32_t i = 0; i < 65536; ++i) all16[i] = uint16_t(i);
  std::vector<float> want_from_bf(65536), want_from_h(65536);
  for (uint32_t i = 0; i < 65536; ++i) want_from_bf[i] = bf16_to_f32_scalar(uint16_t(i)), want_from_h[i] = f16_to_f32_scalar(uint16_t(i));

  for (Isa isa : test::supported_isas()) {
    test::ScopedIsa cap(isa);
    const char* name = isa_name(isa);
    std::vector<uint16_t> bf(src.size()), h(src.size());
    f32_to_bf16(src.data(), bf.data(), src.size());
    f32_to_f16(src.data(), h.data(), src.size());
    expect_same_half(bf, want_bf, true, name);
    expect_same_half(h, want_h, false, name);
    std::vector<float> fb(65536), fh(65536);
    bf16_to_f32(all16.data(), fb.data(), 65536);
    f16_to_f32(all16.data(), fh.data(), 65536);
    expect_same_float(fb, want_from_bf, name);
    expect_same_float(fh, want_from_h, name);
  }
}

TEST(Convert, OddLengthsAndMisalignedPointers) {
  const auto src = test::random_floats(200, 5, 100.f);
  for (Isa isa : test::supported_isas()) {
    test::ScopedIsa cap(isa);
    for (size_t off : {0u, 1u, 3u})
      for (size_t n : {0u, 1u, 7u, 8u, 15u, 16u, 17u, 33u, 67u}) {
        std::vector<uint16_t> out(n + 2, 0x5555);
        f32_to_f16(src.data() + off, out.data() + 1, n);
        EXPECT_EQ(out[0], 0x5555);
        EXPECT_EQ(out[n + 1], 0x5555) << "wrote past the end, n=" << n;
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i + 1], f32_to_f16_scalar(src[off + i]));
        std::vector<float> back(n + 2, 7.f);
        f16_to_f32(out.data() + 1, back.data() + 1, n);
        EXPECT_EQ(back[n + 1], 7.f);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i + 1], f16_to_f32_scalar(out[i + 1]));
      }
  }
}

}  // namespace tz
