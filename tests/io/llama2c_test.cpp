#include <gtest/gtest.h>

#include <cstring>

#include "tensorzip/error.h"
#include "tensorzip/io/llama2c.h"
#include "tests/test_util.h"

namespace tz::io {
namespace {
std::string error_of(const std::vector<uint8_t>& b) {
  try {
    Llama2cCheckpoint::parse(b.data(), b.size(), "mem.bin");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Llama2c, Version0SharedAndUnshared) {
  for (bool shared : {true, false}) {
    const auto b = test::sample_llama2c(0, shared);
    const auto ck = Llama2cCheckpoint::parse(b.data(), b.size(), "v0.bin");
    const auto& c = ck.config();
    EXPECT_EQ(c.version, 0);
    EXPECT_EQ(c.dim, 8);
    EXPECT_EQ(c.vocab_size, 16);
    EXPECT_EQ(c.shared_classifier, shared);
    EXPECT_EQ(ck.tensors().size(), shared ? 13u : 14u);
    const Tensor wk = ck.tensor("wk");
    EXPECT_EQ(wk.shape(), (Shape{2, 4, 8}));  // [layers, kv_dim, dim]
    // token_embedding is first: values 0, 0.001, ...; wq starts after emb (128) + rms_att (16).
    EXPECT_FLOAT_EQ(ck.tensor("token_embedding").data<float>()[1], 0.001f);
    EXPECT_FLOAT_EQ(ck.tensor("wq").data<float>()[0], 0.144f);
    if (!shared) EXPECT_EQ(ck.tensor("wcls").shape(), (Shape{16, 8}));
  }
}

TEST(Llama2c, Version1Layout) {
  const auto b = test::sample_llama2c(1, false);
  const auto ck = Llama2cCheckpoint::parse(b.data(), b.size(), "v1.bin");
  EXPECT_EQ(ck.config().version, 1);
  EXPECT_FALSE(ck.config().shared_classifier);
  // v1 order: rms_att (16), rms_ffn (16), rms_final (8), then token_embedding.
  EXPECT_FLOAT_EQ(ck.tensor("token_embedding").data<float>()[0], 0.040f);
  EXPECT_EQ(ck.tensors().back().name, "wcls");
}

TEST(Llama2c, TruncatedTrailingAndBadHeaders) {
  const auto good = test::sample_llama2c(0, true);
  for (size_t len = 0; len < good.size(); len += 7)
    EXPECT_NE(error_of(std::vector<uint8_t>(good.begin(), good.begin() + long(len))), "") << len;
  auto longer = good;
  longer.push_back(0);
  EXPECT_NE(error_of(longer).find("trailing"), std::string::npos);
  auto bad = good;
  int32_t heads = 3;  // dim 8 not divisible by 3
  std::memcpy(&bad[12], &heads, 4);
  EXPECT_NE(error_of(bad).find("n_heads"), std::string::npos);
  bad = good;
  int32_t zero = 0;
  std::memcpy(&bad[0], &zero, 4);
  EXPECT_NE(error_of(bad).find("dim = 0"), std::string::npos);
  auto v2 = test::sample_llama2c(1, true);
  int32_t two = 2;
  std::memcpy(&v2[4], &two, 4);
  EXPECT_NE(error_of(v2).find("version 2"), std::string::npos);
  EXPECT_NE(error_of({}).find("empty"), std::string::npos);
}

}  // namespace tz::io
