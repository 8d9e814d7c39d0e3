// Tokenizers: llama2.c tokenizer.bin, GGUF (llama.cpp's real SentencePiece vocabulary) and
// tokenizer.json; known ids, agreement between formats, and round trips of the evaluation texts.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/mapped_file.h"
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
  // GPT-2's byte-level BPE: "Hello world" is GPT-2's [15496, 995], and the text comes back whole.
  const auto gpt2 = Tokenizer::from_gguf(io::GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-gpt-2.gguf"));
  EXPECT_EQ(gpt2.kind(), Tokenizer::Kind::ByteBpe);
  EXPECT_EQ(gpt2.encode("Hello world", true), (std::vector<int>{15496, 995}));  // no BOS: the vocabulary adds none
  EXPECT_EQ(gpt2.decode(gpt2.encode(text, false)), text);
  // A tokenizer model outside the two is refused by name.
  io::GgufWriter w;
  w.add_string("tokenizer.ggml.model", "t5");
  const auto bytes = w.serialize();
  const auto bad = io::GgufFile::parse(bytes.data(), bytes.size(), "t5.gguf");
  try {
    Tokenizer::from_gguf(bad);
    FAIL() << "t5 tokenizer accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'t5' is not supported"), std::string::npos) << e.what();
  }
}

// Control tokens in a prompt become their ids when asked (chat templates), and stay text otherwise.
TEST(Tokenizer, SpecialTokensInText) {
  TZ_REQUIRE_MODELS();
  const auto spm = Tokenizer::from_gguf(io::GgufFile::open(test::models_dir() + "/gguf-vocab/ggml-vocab-llama-spm.gguf"));
  const auto with = spm.encode("<s>Hi</s>", false, false, /*parse_special=*/true);
  ASSERT_GE(with.size(), 3u);
  EXPECT_EQ(with.front(), 1);
  EXPECT_EQ(with.back(), 2);
  const auto without = spm.encode("<s>Hi</s>", false);
  EXPECT_EQ(std::count(without.begin(), without.end(), 1), 0);
  EXPECT_EQ(spm.decode(without), "<s>Hi</s>");
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

// llama.cpp's test-tokenizer-0, ported: every vocab GGUF in ../shared/fixtures/tokenizer with its
// .inp / .out vectors (llama_tokenize with add_special = false, parse_special = false).
TEST(Tokenizer, LlamaCppTestVectors) {
  const std::string dir = test::fixtures_dir() + "/tokenizer";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "../shared/fixtures/tokenizer not found";
  std::vector<std::string> vocabs;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.path().extension() == ".gguf" && std::filesystem::exists(e.path().string() + ".inp")) vocabs.push_back(e.path().string());
  std::sort(vocabs.begin(), vocabs.end());
  // Every vocabulary present is supported (SentencePiece, byte-level BPE, WordPiece).
  const std::set<std::string> unsupported = {};
  int tested = 0;
  for (const auto& path : vocabs) {
    const std::string name = std::filesystem::path(path).filename().string();
    const auto g = io::GgufFile::open(path);
    std::optional<Tokenizer> tok;
    std::string why;
    try {
      tok = Tokenizer::from_gguf(g);
    } catch (const Error& e) {
      why = e.what();
    }
    if (!tok) {
      EXPECT_TRUE(unsupported.count(name)) << name << ": " << why;
      std::printf("%-40s unsupported: %s\n", name.c_str(), why.c_str());
      continue;
    }
    const std::string inp = io::read_text_file(path + ".inp");
    std::vector<std::string> texts;
    const std::string sep = "\n__ggml_vocab_test__\n";
    for (size_t p = 0;;) {
      const size_t q = inp.find(sep, p);
      texts.push_back(inp.substr(p, q == std::string::npos ? std::string::npos : q - p));
      if (q == std::string::npos) break;
      p = q + sep.size();
    }
    std::istringstream out(io::read_text_file(path + ".out"));
    int pass = 0, total = 0, lossless = 0;
    std::string line;
    for (size_t i = 0; i < texts.size() && std::getline(out, line); ++i) {
      std::istringstream ls(line);
      std::vector<int> want;
      for (int id; ls >> id;) want.push_back(id);
      const std::vector<int> got = tok->encode(texts[i], false);
      ++total;
      pass += got == want;
      EXPECT_EQ(got, want) << name << ": [" << texts[i] << "]";
      lossless += tok->kind() == Tokenizer::Kind::ByteBpe && tok->decode(got) == texts[i];
    }
    if (tok->kind() == Tokenizer::Kind::ByteBpe) EXPECT_EQ(lossless, total) << name << ": decode(encode(t)) != t";
    ++tested;
    std::printf("%-40s %s %d/%d identical to llama.cpp\n", name.c_str(), tok->kind() == Tokenizer::Kind::ByteBpe ? "bpe" : tok->kind() == Tokenizer::Kind::WordPiece ? "wpm" : "spm", pass, total);
  }
  EXPECT_GE(tested, 9);
}

}  // namespace tz
