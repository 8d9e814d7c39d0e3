#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensorzip/error.h"
#include "tensorzip/format.h"
#include "tests/test_util.h"

namespace tz {

TEST(Format, PackUnpackIsExactForEveryWidth) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits)
    for (int64_t n : {1, 7, 8, 9, 31, 257, 4095}) {
      std::vector<uint8_t> codes(static_cast<size_t>(n));
      for (auto& c : codes) c = uint8_t(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(dtype_bytes(packed_dtype(bits), size_t(n)) + 1, 0xAB);
      pack_codes_ref(codes.data(), n, bits, packed.data());
      EXPECT_EQ(packed.back(), 0xAB) << "wrote past the packed size, bits=" << bits << " n=" << n;
      std::vector<uint8_t> back(static_cast<size_t>(n));
      unpack_codes_ref(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, codes) << "bits=" << bits << " n=" << n;
    }
}

TEST(Format, PackRejectsOversizedCodes) {
  uint8_t codes[2] = {3, 4}, out[1];
  EXPECT_THROW(pack_codes_ref(codes, 2, 2, out), Error);
}

TEST(Format, RtnErrorWithinHalfStep) {
  const int64_t rows = 5, cols = 4095;  // last group partial
  const auto w = test::random_floats(size_t(rows * cols), 3);
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {true, false})
      for (int group : {32, 128, 0}) {
        QuantFormat f;
        f.bits = bits;
        f.group = group;
        f.symmetric = sym;
        const QuantMatrix q = quantize_rtn_ref(w.data(), rows, cols, f);
        std::vector<float> d(w.size());
        dequantize_ref(q, d.data());
        const int64_t g = f.group_size(cols), ng = q.groups_per_row();
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < cols; ++i) {
            const float s = q.scales[size_t(r * ng + i / g)];
            // Asymmetric zero points are rounded, which can clip the group's extreme by half a step more.
            const float bound = (sym ? 0.5f : 1.0f) * s * (1 + 1e-5f) + 1e-7f;
            ASSERT_LE(std::fabs(d[size_t(r * cols + i)] - w[size_t(r * cols + i)]), bound)
                << f.to_string() << " r=" << r << " i=" << i;
          }
        // Symmetric: the group's largest magnitude lands on the extreme level, so quantizing
        // the dequantized grid reproduces the same scales and codes.
        if (sym) {
          const QuantMatrix q2 = quantize_rtn_ref(d.data(), rows, cols, f);
          EXPECT_EQ(q2.codes, q.codes) << f.to_string();
        }
      }
}

TEST(Format, TernaryLevels) {
  const auto w = test::random_floats(256, 4);
  QuantFormat f;
  f.bits = 2;
  f.ternary = true;
  f.group = 0;
  const QuantMatrix q = quantize_rtn_ref(w.data(), 1, 256, f);
  std::vector<float> d(256);
  dequantize_ref(q, d.data());
  const float s = q.scales[0];
  for (float v : d) EXPECT_TRUE(v == 0.f || std::fabs(std::fabs(v) - s) < 1e-7f) << v;
}

TEST(Format, InvalidFormatsRejected) {
  const float w[4] = {1, 2, 3, 4};
  QuantFormat f;
  f.bits = 9;
  EXPECT_THROW(quantize_rtn_ref(w, 1, 4, f), Error);
  f.bits = 3;
  f.ternary = true;
  EXPECT_THROW(quantize_rtn_ref(w, 1, 4, f), Error);
  f = QuantFormat{};
  f.scale_dtype = DType::I8;
  EXPECT_THROW(quantize_rtn_ref(w, 1, 4, f), Error);
  const float bad[4] = {1, NAN, 3, 4};
  EXPECT_THROW(quantize_rtn_ref(bad, 1, 4, QuantFormat{}), Error);
}

}  // namespace tz
