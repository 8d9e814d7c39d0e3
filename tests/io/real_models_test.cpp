// The readers on the real files in ../shared/models (written by other tools: llama2.c's export and
// llama.cpp's GGUF converter — the independent check), and on corrupted copies of them.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/llama2c.h"
#include "tests/test_util.h"

namespace tz::io {

TEST(RealModels, Stories260KShapes) {
  TZ_REQUIRE_MODELS();
  const auto ck = Llama2cCheckpoint::open(test::models_dir() + "/stories260K/stories260K.bin");
  const auto& c = ck.config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_TRUE(c.shared_classifier);
  // The tensor order and shapes documented in shared/models/README.md.
  const std::vector<std::pair<std::string, Shape>> want = {
      {"token_embedding", {512, 64}}, {"rms_att", {5, 64}}, {"wq", {5, 64, 64}}, {"wk", {5, 32, 64}},
      {"wv", {5, 32, 64}}, {"wo", {5, 64, 64}}, {"rms_ffn", {5, 64}}, {"w1", {5, 172, 64}},
      {"w2", {5, 64, 172}}, {"w3", {5, 172, 64}}, {"rms_final", {64}}, {"freq_cis_real", {512, 4}},
      {"freq_cis_imag", {512, 4}}};
  ASSERT_EQ(ck.tensors().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(ck.tensors()[i].name, want[i].first);
    EXPECT_EQ(ck.tensors()[i].shape, want[i].second) << want[i].first;
  }
  // RMSNorm weights of a trained model are positive and O(1); RoPE table row 0 is cos(0) = 1.
  const Tensor rms = ck.tensor("rms_final");
  for (int i = 0; i < 64; ++i) EXPECT_GT(rms.data<float>()[i], 0.f);
  EXPECT_FLOAT_EQ(ck.tensor("freq_cis_real").data<float>()[0], 1.f);
}

TEST(RealModels, GgufVocabMetadata) {
  TZ_REQUIRE_MODELS();
  const auto spm = GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm.version(), 3u);
  EXPECT_EQ(spm.metadata().size(), 22u);
  EXPECT_EQ(spm.tensors().size(), 0u);
  EXPECT_EQ(spm.find("general.architecture")->as_string(), "llama");
  EXPECT_EQ(spm.find("llama.vocab_size")->as_uint(), 32000u);
  EXPECT_EQ(spm.find("tokenizer.ggml.tokens")->type_string(), "array[string; 32000]");
  EXPECT_EQ(spm.find("tokenizer.ggml.scores")->type_string(), "array[f32; 32000]");
  EXPECT_EQ(spm.find("tokenizer.ggml.token_type")->type_string(), "array[i32; 32000]");
  EXPECT_EQ(spm.find("tokenizer.ggml.add_bos_token")->type_string(), "bool");
  EXPECT_EQ(std::get<std::string>(spm.find("tokenizer.ggml.tokens")->items[1]), "<s>");

  const auto gpt2 = GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2.metadata().size(), 16u);
  EXPECT_EQ(gpt2.find("tokenizer.ggml.merges")->type_string(), "array[string; 50000]");
  EXPECT_EQ(gpt2.find("tokenizer.ggml.tokens")->items.size(), 50257u);
}

namespace {
template <class Parse>
void corrupt_copies_fail_cleanly(const std::vector<uint8_t>& full, Parse parse, bool flips_must_fail) {
  // Truncations: at every 1/64th and the last bytes.
  for (size_t i = 0; i <= 64; ++i) {
    const size_t len = std::min(full.size() - 1, full.size() * i / 64);
    std::vector<uint8_t> b(full.begin(), full.begin() + long(len));
    EXPECT_THROW(parse(b), Error) << "truncated to " << len;
  }
  // Bit flips in the header region and anywhere: an error or a valid parse, never a crash.
  std::mt19937 rng(99);
  for (int it = 0; it < 300; ++it) {
    auto b = full;
    const size_t pos = it % 2 ? rng() % std::min<size_t>(b.size(), 4096) : rng() % b.size();
    b[pos] ^= uint8_t(1u << (rng() % 8));
    try {
      parse(b);
    } catch (const Error&) {
    }
  }
  (void)flips_must_fail;
  EXPECT_THROW(parse(std::vector<uint8_t>{}), Error);
}
}  // namespace

TEST(RealModels, CorruptedCopiesFailCleanly) {
  TZ_REQUIRE_MODELS();
  corrupt_copies_fail_cleanly(test::read_file(test::models_dir() + "/stories260K/stories260K.bin"),
                              [](const std::vector<uint8_t>& b) { Llama2cCheckpoint::parse(b.data(), b.size(), "x.bin"); }, false);
  for (const char* f : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"})
    corrupt_copies_fail_cleanly(test::read_file(test::models_dir() + "/gguf-vocab/" + f),
                                [](const std::vector<uint8_t>& b) { GgufFile::parse(b.data(), b.size(), "x.gguf"); }, false);
}

}  // namespace tz::io
