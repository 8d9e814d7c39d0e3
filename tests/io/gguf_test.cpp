#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tests/test_util.h"

namespace tz::io {
namespace {

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    GgufFile::parse(b.data(), b.size(), "mem.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<uint8_t> header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::vector<uint8_t> b(24);
  const uint32_t magic = 0x46554747;
  std::memcpy(&b[0], &magic, 4);
  std::memcpy(&b[4], &version, 4);
  std::memcpy(&b[8], &n_tensors, 8);
  std::memcpy(&b[16], &n_kv, 8);
  return b;
}

}  // namespace

TEST(Gguf, RoundTripMetadataAndTensors) {
  const auto bytes = test::sample_gguf();
  const auto f = GgufFile::parse(bytes.data(), bytes.size(), "sample.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 10u);
  EXPECT_EQ(f.find("general.architecture")->as_string(), "llama");
  EXPECT_EQ(f.find("llama.block_count")->as_uint(), 2u);
  EXPECT_EQ(f.find("llama.block_count")->type_string(), "u32");
  EXPECT_EQ(f.find("test.i8")->to_string(), "-3");
  EXPECT_EQ(f.find("test.i64")->to_string(), "-1234567890123");
  EXPECT_EQ(f.find("test.f64")->to_string(), "2.5");
  EXPECT_EQ(f.find("test.bool")->to_string(), "true");
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->type_string(), "array[string; 4]");
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->to_string(), R"(["<unk>", "<s>", "</s>", "hello"])");
  EXPECT_EQ(f.find("tokenizer.ggml.scores")->to_string(2), "[0, -1, ... (4 items)]");
  ASSERT_EQ(f.tensors().size(), 5u);

  const auto vals = test::random_floats(64, 17);
  const Tensor a = f.tensor_f32("t.f32");
  EXPECT_EQ(a.shape(), (Shape{2, 32}));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(a.data<float>()[i], vals[size_t(i)]);
  const Tensor h = f.tensor_f32("t.f16"), b = f.tensor_f32("t.bf16");
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(h.data<float>()[i], f16_to_f32_scalar(f32_to_f16_scalar(vals[size_t(i)])));
    EXPECT_EQ(b.data<float>()[i], bf16_to_f32_scalar(f32_to_bf16_scalar(vals[size_t(i)])));
  }
  // q8_0 error <= d/2 per value, q4_0 <= d/2 (d = scale of the block) plus f16 scale rounding.
  const Tensor q8 = f.tensor_f32("t.q8_0"), q4 = f.tensor_f32("t.q4_0");
  for (int blk = 0; blk < 2; ++blk) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(vals[size_t(blk * 32 + i)]));
    for (int i = 0; i < 32; ++i) {
      const size_t j = size_t(blk * 32 + i);
      EXPECT_NEAR(q8.data<float>()[j], vals[j], amax / 127.f * 0.5f + amax * 1e-3f);
      EXPECT_NEAR(q4.data<float>()[j], vals[j], amax / 8.f * 0.5f + amax * 2e-3f + 1e-6f);
    }
  }
  EXPECT_THROW(f.tensor_f32("nope"), Error);
}

TEST(Gguf, EveryTruncationIsACleanError) {
  const auto full = test::sample_gguf();
  // The writer pads the last tensor to the alignment; cutting only that padding is still valid.
  const auto f = GgufFile::parse(full.data(), full.size(), "full.gguf");
  size_t end = 0;
  for (const auto& t : f.tensors()) end = std::max(end, size_t(f.tensor_data(t) - full.data()) + size_t(t.nbytes));
  for (size_t len = 0; len < end; ++len) {
    std::vector<uint8_t> b(full.begin(), full.begin() + long(len));
    ASSERT_NE(error_of(b), "") << "prefix of " << len << " bytes accepted";
  }
}

TEST(Gguf, BitFlipsNeverCrash) {
  const auto full = test::sample_gguf();
  std::mt19937 rng(1);
  int rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    auto b = full;
    for (int f = 0; f < 1 + int(rng() % 3); ++f) b[rng() % b.size()] ^= uint8_t(1u << (rng() % 8));
    try {
      const auto g = GgufFile::parse(b.data(), b.size(), "flip.gguf");
      for (const auto& t : g.tensors()) {
        try {
          (void)g.tensor_f32(t.name);
        } catch (const Error&) {
        }
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(Gguf, MalformedFilesAreRejected) {
  EXPECT_NE(error_of({}).find("empty"), std::string::npos);
  EXPECT_NE(error_of({'G', 'G', 'U', 'X', 0, 0, 0, 0}).find("magic"), std::string::npos);
  EXPECT_NE(error_of(header(1, 0, 0)).find("version 1"), std::string::npos);
  EXPECT_NE(error_of(header(7, 0, 0)).find("unsupported GGUF version"), std::string::npos);
  EXPECT_NE(error_of(header(3, 0, uint64_t(1) << 60)).find("metadata count"), std::string::npos);
  EXPECT_NE(error_of(header(3, uint64_t(1) << 60, 0)).find("tensor count"), std::string::npos);
  EXPECT_EQ(error_of(header(3, 0, 0)), "");  // an empty GGUF is valid

  GgufWriter w;
  w.add("general.alignment", {GgufType::U32, GgufType::U8, {uint64_t(3)}});
  EXPECT_NE(error_of(w.serialize()).find("power of two"), std::string::npos);

  // A huge array length must be rejected before allocating.
  auto b = header(3, 0, 1);
  const std::string key = "k";
  const uint64_t klen = key.size();
  b.insert(b.end(), (const uint8_t*)&klen, (const uint8_t*)&klen + 8);
  b.insert(b.end(), key.begin(), key.end());
  const uint32_t arr = 9, elem = 4;
  const uint64_t count = uint64_t(1) << 62;
  b.insert(b.end(), (const uint8_t*)&arr, (const uint8_t*)&arr + 4);
  b.insert(b.end(), (const uint8_t*)&elem, (const uint8_t*)&elem + 4);
  b.insert(b.end(), (const uint8_t*)&count, (const uint8_t*)&count + 8);
  EXPECT_NE(error_of(b).find("cannot fit"), std::string::npos);
}

TEST(Gguf, TensorInfoValidation) {
  GgufWriter w;
  w.add_tensor("a", kGgmlF32, {4}, std::vector<uint8_t>(16));
  auto good = w.serialize();
  EXPECT_EQ(error_of(good), "");
  // Find the tensor type field (after name and dims) and corrupt it.
  const size_t type_pos = 24 + 8 + 1 + 4 + 8;
  auto b = good;
  b[type_pos] = 200;
  EXPECT_NE(error_of(b).find("unknown ggml type"), std::string::npos);
  b = good;
  b[type_pos] = 2;  // q4_0 with a row of 4 values: not a multiple of the block
  EXPECT_NE(error_of(b).find("block size"), std::string::npos);
  b = good;
  b[type_pos + 4] = 64;  // offset 64: past the data
  EXPECT_NE(error_of(b).find("truncated"), std::string::npos);
  b = good;
  b[type_pos + 4] = 1;  // offset 1: misaligned
  EXPECT_NE(error_of(b).find("alignment"), std::string::npos);
  b = good;
  b[24 + 8 + 1] = 5;  // 5 dims
  EXPECT_NE(error_of(b).find("dimensions"), std::string::npos);
  EXPECT_THROW(w.add_tensor("b", kGgmlQ4_0, {31}, std::vector<uint8_t>(18)), Error);
  EXPECT_THROW(w.add_tensor("c", kGgmlF32, {4}, std::vector<uint8_t>(15)), Error);
}

TEST(GgmlBlocks, Q8AndQ4MatchHandComputedValues) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = float(i - 16);  // amax 16 at i=0 (value -16)
  std::vector<uint8_t> q4(kQ4_0BlockBytes), q8(kQ8_0BlockBytes);
  quantize_q4_0(x.data(), q4.data(), 32);
  quantize_q8_0(x.data(), q8.data(), 32);
  std::vector<float> d4(32), d8(32);
  dequantize_q4_0(q4.data(), d4.data(), 32);
  dequantize_q8_0(q8.data(), d8.data(), 32);
  // q4_0: d = max/-8 = 2, so every even value is exact; -16 -> nibble 0.
  EXPECT_EQ(d4[0], -16.f);
  EXPECT_EQ(d4[2], -14.f);
  EXPECT_EQ(q4[2] & 0x0f, 0);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(d8[size_t(i)], x[size_t(i)], 16.f / 127.f / 2 + 1e-3f);
}

}  // namespace tz::io
