#include <gtest/gtest.h>

#include "tensorzip/dtype.h"
#include "tensorzip/error.h"

namespace tz {

TEST(DType, NamesRoundTrip) {
  for (int i = 0; i < int(DType::COUNT); ++i) {
    const DType t = DType(i);
    EXPECT_EQ(dtype_traits(t).dtype, t);
    ASSERT_TRUE(dtype_from_name(dtype_name(t)).has_value()) << dtype_name(t);
    EXPECT_EQ(*dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_FALSE(dtype_from_name("F128").has_value());
}

TEST(DType, PlainSizes) {
  EXPECT_EQ(dtype_size(DType::F32), 4u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(dtype_size(DType::I8), 1u);
  EXPECT_EQ(dtype_bytes(DType::F32, 7), 28u);
  EXPECT_THROW(dtype_size(DType::Q4), Error);
}

TEST(DType, PackedBytesRoundUpToBlocks) {
  EXPECT_EQ(dtype_bytes(DType::Q1, 8), 1u);
  EXPECT_EQ(dtype_bytes(DType::Q1, 9), 2u);
  EXPECT_EQ(dtype_bytes(DType::Q2, 4095), 1024u);
  EXPECT_EQ(dtype_bytes(DType::Q3, 8), 3u);
  EXPECT_EQ(dtype_bytes(DType::Q3, 9), 6u);
  EXPECT_EQ(dtype_bytes(DType::Q4, 4095), 2048u);
  EXPECT_EQ(dtype_bytes(DType::TERNARY, 5), 2u);
  EXPECT_EQ(dtype_bytes(DType::GGML_Q4_0, 64), 36u);
  EXPECT_EQ(dtype_bytes(DType::GGML_Q8_0, 32), 34u);
  for (int b = 1; b <= 8; ++b) {
    EXPECT_EQ(packed_bits(packed_dtype(b)), b);
    // Enough bytes for the bit stream, never more than one block of slack.
    for (size_t n : {1u, 7u, 31u, 4095u}) EXPECT_GE(dtype_bytes(packed_dtype(b), n) * 8, n * size_t(b));
  }
  EXPECT_THROW(packed_dtype(0), Error);
  EXPECT_THROW(packed_dtype(9), Error);
}

}  // namespace tz
