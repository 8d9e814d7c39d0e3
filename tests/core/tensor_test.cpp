#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tensorzip/error.h"
#include "tensorzip/tensor.h"

namespace tz {

TEST(Tensor, OwningIsAlignedAndSized) {
  Tensor t = Tensor::empty(DType::F32, {3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  EXPECT_EQ(t.numel(), 15);
  EXPECT_EQ(t.nbytes(), 60u);
  EXPECT_TRUE(t.owns_data());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.strides(), (Shape{5, 1}));
  Tensor z = Tensor::zeros(DType::BF16, {4, 4});
  for (int i = 0; i < 16; ++i) EXPECT_EQ(z.data<uint16_t>()[i], 0);
}

TEST(Tensor, ViewSharesCallerMemory) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  Tensor v = Tensor::view(DType::F32, {2, 3}, buf);
  EXPECT_FALSE(v.owns_data());
  EXPECT_EQ(v.data<float>(), buf);
  Tensor row = v.select(1);
  EXPECT_EQ(row.shape(), (Shape{3}));
  EXPECT_EQ(row.data<float>()[0], 4.f);
  Tensor r = v.reshape({3, 2});
  EXPECT_EQ(r.data<float>(), buf);
  EXPECT_THROW(v.reshape({4, 2}), Error);
  EXPECT_THROW(v.select(2), Error);
}

TEST(Tensor, StridedCloneIsContiguous) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  // Transposed view of a 2x3 matrix: shape [3,2], strides [1,3].
  Tensor t = Tensor::view_strided(DType::F32, {3, 2}, {1, 3}, buf);
  EXPECT_FALSE(t.is_contiguous());
  Tensor c = t.clone();
  EXPECT_TRUE(c.is_contiguous());
  const float want[6] = {1, 4, 2, 5, 3, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.data<float>()[i], want[i]);
}

TEST(Tensor, ConvertRoundTrip) {
  Tensor t = Tensor::empty(DType::F32, {5});
  const float vals[5] = {1.f, -2.5f, 0.f, 65504.f, 1e-3f};
  std::memcpy(t.raw(), vals, sizeof vals);
  Tensor h = t.to(DType::F16);
  Tensor b = t.to(DType::BF16);
  Tensor h2 = h.to(DType::F32), b2 = b.to(DType::F32);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(h2.data<float>()[i], vals[i], std::fabs(vals[i]) * 1e-3f);
    EXPECT_NEAR(b2.data<float>()[i], vals[i], std::fabs(vals[i]) * 8e-3f);
  }
  EXPECT_THROW(t.to(DType::I8), Error);
}

TEST(Tensor, PackedDtypeRowBytes) {
  Tensor q = Tensor::empty(DType::Q3, {4, 10});  // 10 values of 3 bits -> 2 blocks of 8 -> 6 bytes
  EXPECT_EQ(q.nbytes(), 24u);
  EXPECT_TRUE(q.strides().empty());
  EXPECT_EQ(static_cast<char*>(q.select(1).raw()) - static_cast<char*>(q.raw()), 6);
}

TEST(Tensor, EmptyShapeWithHugeDimensions) {
  // Found by fuzzing the GGUF reader: a zero dimension next to huge ones must not overflow.
  Tensor t = Tensor::empty(DType::F32, {int64_t(1) << 61, 0, int64_t(1) << 40});
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.nbytes(), 0u);
}

TEST(Tensor, BadShapesRejected) {
  EXPECT_THROW(Tensor::empty(DType::F32, {-1, 2}), Error);
  EXPECT_THROW(shape_numel({int64_t(1) << 40, int64_t(1) << 40}), Error);
}

}  // namespace tz
