// Tokenizers: llama2.c tokenizer.bin, GGUF (llama.cpp's real SentencePiece vocabulary) and
// tokenizer.json; known ids, agreement between formats, and round trips of the evaluation texts.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/tokenizer.h"
#include "tests/test_util.h"

namespace tz {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A tokenizer.json equivalent to a scored vocabulary: pieces with U+2581 spaces and one merge per
// split of every multi-character piece into two pieces, ranked by the merged piece's score (what
// Hugging Face's SentencePiece converter produces).
std::string hf_json_from(const Tokenizer& t) {
  const std::string meta = "\xe2\x96\x81";
  nlohmann::json vocab = nlohmann::json::object();
  std::vector<std::string> pieces;
  for (int i = 0; i < t.vocab_size(); ++i) {
    std::string p;
    for (char c : t.piece(i)) p += c == ' ' ? meta : std::string(1, c);
    pieces.push_back(p);
    vocab[p] = i;
  }
  std::vector<std::tuple<float, int, std::string, std::string>> merges;
  for (int i = 3; i < t.vocab_size(); ++i) {
    const std::string& p = pieces[size_t(i)];
    if (p.size() == 6 && p.compare(0, 3, "<0x") == 0) continue;
    for (size_t cut = 1; cut < p.size(); ++cut) {
      const std::string a = p.substr(0, cut), b = p.substr(cut);
      if (vocab.contains(a) && vocab.contains(b)) merges.emplace_back(-t.score(i), i, a, b);
    }
  }
  std::sort(merges.begin(), merges.end());
  nlohmann::json m = nlohmann::json::array();
  for (auto& [s, i, a, b] : merges) m.push_back(a + " " + b);
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 0}, {"content", "<unk>"}}, {{"id", 1}, {"content", "<s>"}}, {{"id", 2}, {"content", "</s>"}}}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", meta}}, {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}}}}}},
      {"pre_tokenizer", nullptr},
      {"model", {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", m}}}};
  return j.dump();
}

TEST(Tokenizer, Llama2KnownIds) {
  TZ_REQUIRE_MODELS();
  const auto t = Tokenizer::from_llama2c(test::models_dir() + "/llama2-tokenizer/tokenizer.bin");
  EXPECT_EQ(t.vocab_size(), 32000);
  // The Llama-2 tokenizer's well-known encodings (sentencepiece, add_bos).
  EXPECT_EQ(t.encode("Hello world", true), (std::vector<int>{1, 15043, 3186}));
  EXPECT_EQ(t.encode("", true), (std::vector<int>{1}));
  // Byte fallback: a character missing from the vocabulary becomes its UTF-8 bytes (<0xXX> = 3 + byte).
  const auto ids = t.encode("\xf0\x9f\xa6\x99", false);  // U+1F999, not a piece
  EXPECT_EQ(ids, (std::vector<int>{29871, 3 + 0xf0, 3 + 0x9f, 3 + 0xa6, 3 + 0x99}));  // "▁" + 4 bytes
  EXPECT_EQ(t.decode(ids), "\xf0\x9f\xa6\x99");
}

TEST(Tokenizer, GgufVocabularyMatchesTokenizerBin) {
  TZ_REQUIRE_MODELS();
  const auto bin = Tokenizer::from_llama2c(test::models_dir() + "/llama2-tokenizer/tokenizer.bin");
  const auto g = io::GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-llama-spm.gguf");
  const auto spm = Tokenizer::from_gguf(g);
  EXPECT_EQ(spm.vocab_size(), 32000);
  EXPECT_EQ(spm.encode("Hello world", true), (std::vector<int>{1, 15043, 3186}));
  const std::string text = read_text(test::models_dir() + "/eval-text/tinystories_valid_head.txt").substr(0, 20000);
  const auto a = bin.encode(text, true), b = spm.encode(text, true);
  EXPECT_EQ(a, b);
  EXPECT_EQ(spm.decode(b), text);
  // GPT-2's byte-level BPE is refused clearly, not mis-tokenized.
  const auto gpt2 = io::GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-gpt-2.gguf");
  try {
    Tokenizer::from_gguf(gpt2);
    FAIL() << "gpt2 tokenizer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RoundTripsEvaluationTexts) {
  TZ_REQUIRE_MODELS();
  const auto t = Tokenizer::from_llama2c(test::models_dir() + "/stories260K/tok512.bin", 512);
  for (const char* f : {"tinystories_valid_head.txt", "wikitext2_test.raw"}) {
    const std::string text = read_text(test::models_dir() + "/eval-text/" + f);
    const auto ids = t.encode(text, true);
    EXPECT_GT(ids.size(), text.size() / 8) << f;
    EXPECT_EQ(t.decode(ids), text) << f;
  }
  // Decoding piece by piece (what `run` prints) gives the same text.
  const std::string s = "Once upon a time, Lily's cat ran \xc3\xa9t\xc3\xa9!\n\nThe end.";
  const auto ids = t.encode(s, true);
  std::string streamed;
  for (size_t i = 1; i < ids.size(); ++i) streamed += t.decode_piece(ids[i - 1], ids[i]);
  EXPECT_EQ(streamed, s);
}

TEST(Tokenizer, MergesModeEqualsScoresMode) {
  TZ_REQUIRE_MODELS();
  const auto bin = Tokenizer::from_llama2c(test::models_dir() + "/stories260K/tok512.bin", 512);
  const auto hf = Tokenizer::parse_hf_json(hf_json_from(bin), "test tokenizer.json");
  EXPECT_EQ(hf.bos_id(), 1);
  const std::string text = read_text(test::models_dir() + "/eval-text/tinystories_valid_head.txt").substr(0, 50000);
  EXPECT_EQ(hf.encode(text, true), bin.encode(text, true));
  EXPECT_EQ(hf.decode(hf.encode(text, true)), text);
}

TEST(Tokenizer, BadFilesGiveClearErrors) {
  const std::vector<uint8_t> truncated = {0x10, 0, 0, 0, 0, 0, 0x80, 0x3f, 5, 0, 0, 0, 'a'};
  try {
    Tokenizer::parse_llama2c(truncated.data(), truncated.size(), "tok.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tok.bin"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::parse_hf_json("{not json", "t.json"), Error);
  EXPECT_THROW(Tokenizer::parse_hf_json(R"({"model":{"type":"Unigram","vocab":[]}})", "t.json"), Error);
  EXPECT_THROW(Tokenizer::parse_hf_json(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}})", "t.json"), Error);
}

}  // namespace
// Issue 23, item 4: ~100,000 levels of nesting in tokenizer.json are an error, not a stack overflow.
TEST(Tokenizer, DeeplyNestedJsonIsAnError) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& text : {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"pretokenizers\":" + deep + "}}",
                                  "{\"x\":" + std::string(100000, '{') }) {
    try {
      Tokenizer::parse_hf_json(text, "deep.json");
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("deep.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace tz
