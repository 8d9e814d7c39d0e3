// Every GGUF weight type against llama.cpp's own reference (../shared/fixtures/quant: files written
// by llama-quantize, dequantized by gguf-py, which is bit-identical to ggml's to_float): the
// covering subset value by value, and every tensor of every file by the sha256 of its values.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tests/test_util.h"

namespace tz::io {
namespace {

namespace fs = std::filesystem;

std::string sha256_hex(const void* data, size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data, n, md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len; ++i) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return s;
}

std::vector<std::string> quant_files() {
  std::vector<std::string> v;
  const std::string dir = test::fixtures_dir() + "/quant";
  if (!fs::exists(dir)) return v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".gguf") v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST(GgmlTypes, EveryTensorOfEveryQuantFileDequantizesBitExactly) {
  const auto files = quant_files();
  if (files.empty()) GTEST_SKIP() << "../shared/fixtures/quant not found";
  std::map<std::string, int> checked;  // ggml type -> tensors checked
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    const auto g = GgufFile::open(path);
    const std::string stem = path.substr(0, path.size() - 5);
    // The covering subset: value by value, tolerance 1e-6 · max|w| (met exactly in practice).
    const auto ref = SafetensorsFile::open(stem + ".dequant.safetensors");
    for (const auto& e : ref.tensors()) {
      const Tensor want = ref.tensor(e.name), got = g.tensor_f32(e.name);
      ASSERT_EQ(got.shape(), want.shape()) << e.name;
      const float* a = got.data<float>();
      const float* b = want.data<float>();
      float amax = 0, diff = 0;
      for (int64_t i = 0; i < want.numel(); ++i) {
        amax = std::max(amax, std::fabs(b[i]));
        diff = std::max(diff, std::fabs(a[i] - b[i]));
      }
      EXPECT_LE(diff, 1e-6f * amax) << e.name;
    }
    // Every tensor: the sha256 of its float32 values.
    const auto digest = nlohmann::json::parse(read_text_file(stem + ".dequant.digest.json"));
    for (const auto& [name, d] : digest.at("tensors").items()) {
      const GgufTensorInfo* t = g.find_tensor(name);
      ASSERT_NE(t, nullptr) << name;
      const Tensor got = g.tensor_f32(name);
      EXPECT_EQ(sha256_hex(got.raw(), size_t(got.numel()) * 4), d.at("sha256").get<std::string>())
          << name << " (" << ggml_type_info(t->ggml_type)->name << ")";
      ++checked[ggml_type_info(t->ggml_type)->name];
    }
  }
  // Every type the issue lists was seen.
  for (const char* type : {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
                           "iq4_nl", "iq4_xs", "tq1_0", "tq2_0"})
    EXPECT_GT(checked[type], 0) << type;
  std::string summary;
  for (const auto& [type, n] : checked) summary += type + std::string(":") + std::to_string(n) + " ";
  std::printf("dequantized bit-exactly (type:tensors): %s\n", summary.c_str());
}

TEST(GgmlTypes, UnsupportedTypesAreNamed) {
  EXPECT_TRUE(ggml_dequantize_supported(kGgmlQ6_K));
  EXPECT_FALSE(ggml_dequantize_supported(16));  // iq2_xxs
  std::vector<uint8_t> blk(66, 0);
  std::vector<float> out(256);
  try {
    dequantize_ggml(16, blk.data(), out.data(), 256);
    FAIL() << "iq2_xxs accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_ggml(kGgmlQ4_K, blk.data(), out.data(), 100), Error);  // not whole blocks
}

// The writers: every quantizer's blocks read back (through the dequantizers checked above) within
// the error its bits allow, on Gaussian rows, and q4_0 / q8_0 bit-exactly as before.
TEST(GgmlTypes, QuantizersRoundTripWithinTheirBits) {
  const auto x = test::random_floats(256 * 24, 7, 0.02f);
  const std::pair<uint32_t, double> cases[] = {{kGgmlQ4_0, 0.12}, {kGgmlQ4_1, 0.10}, {kGgmlQ5_0, 0.06}, {kGgmlQ5_1, 0.05},
                                               {kGgmlQ8_0, 0.006}, {kGgmlQ2_K, 0.45}, {kGgmlQ4_K, 0.11}, {kGgmlQ5_K, 0.055},
                                               {kGgmlQ6_K, 0.03}, {kGgmlIQ4_NL, 0.11}, {kGgmlIQ4_XS, 0.11}, {kGgmlQ3_K, 0.25},
                                               {kGgmlTQ1_0, 0.5}, {kGgmlTQ2_0, 0.5}};
  for (const auto& [type, bound] : cases) {
    const GgmlTypeInfo* ti = ggml_type_info(type);
    SCOPED_TRACE(ti->name);
    ASSERT_TRUE(ggml_quantize_supported(type));
    std::vector<uint8_t> blocks(x.size() / ti->block_values * ti->block_bytes);
    quantize_ggml(type, x.data(), blocks.data(), x.size());
    std::vector<float> y(x.size());
    dequantize_ggml(type, blocks.data(), y.data(), y.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) num += (y[i] - x[i]) * (y[i] - x[i]), den += double(x[i]) * x[i];
    const double rel = std::sqrt(num / den);
    EXPECT_LE(rel, bound);
    std::printf("%-7s relative RMS error %.4f\n", ti->name, rel);
  }
  EXPECT_FALSE(ggml_quantize_supported(16));  // IQ2_XXS: read, not written
  // Ternary weights (d·{−1, 0, 1}, d an f16 value) come back exactly through TQ1_0 and TQ2_0.
  std::vector<float> t(256 * 4);
  for (size_t i = 0; i < t.size(); ++i) t[i] = 0.046875f * float(int((i * 7 + i / 5) % 3) - 1);
  for (const uint32_t type : {kGgmlTQ1_0, kGgmlTQ2_0}) {
    const GgmlTypeInfo* ti = ggml_type_info(type);
    std::vector<uint8_t> blocks(t.size() / 256 * ti->block_bytes);
    quantize_ggml(type, t.data(), blocks.data(), t.size());
    std::vector<float> y(t.size());
    dequantize_ggml(type, blocks.data(), y.data(), y.size());
    EXPECT_EQ(y, t) << ti->name;
  }
}

}  // namespace tz::io
