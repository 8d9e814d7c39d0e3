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
#include "tensorzip/llama.h"
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
    // A byte-level tokenizer written as tokenizer.json (how tensorzip files store it) reads back
    // to the same encodings.
    std::optional<Tokenizer> rt;
    if (tok->kind() == Tokenizer::Kind::ByteBpe) rt = Tokenizer::parse_hf_json(tok->to_hf_json(), name + " (to_hf_json)");
    // So does a WordPiece vocabulary written as to_wordpiece_json (its form in tensorzip files).
    if (tok->kind() == Tokenizer::Kind::WordPiece) rt = Tokenizer::from_wordpiece_json(tok->to_wordpiece_json(), name + " (wordpiece json)");
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
      if (rt) EXPECT_EQ(rt->encode(texts[i], false), want) << name << " read back from its tensorzip form: [" << texts[i] << "]";
      lossless += tok->kind() == Tokenizer::Kind::ByteBpe && tok->decode(got) == texts[i];
    }
    if (tok->kind() == Tokenizer::Kind::ByteBpe) EXPECT_EQ(lossless, total) << name << ": decode(encode(t)) != t";
    ++tested;
    std::printf("%-40s %s %d/%d identical to llama.cpp\n", name.c_str(), tok->kind() == Tokenizer::Kind::ByteBpe ? "bpe" : tok->kind() == Tokenizer::Kind::WordPiece ? "wpm" : "spm", pass, total);
  }
  EXPECT_GE(tested, 9);
}

}  // namespace tz

namespace tz {
namespace {

// A tensorzip file holding one small tensor and `tok`, read back.
LlamaSource through_tensorzip_file(const Tokenizer& tok, const std::string& name) {
  LlamaSource plain;
  plain.label = "plain";
  plain.tensors["w"] = Tensor::empty(DType::F32, {2, 2});
  std::fill_n(plain.tensors["w"].data<float>(), 4, 1.f);
  const std::string out = test::temp_dir() + "/" + name;
  write_tensorzip(plain, &tok, out);
  return load_tensorzip(out);
}

// A GGUF byte-level vocabulary written as a Hugging Face tokenizer.json with the given
// pre-tokenizer (vocab, merges, added tokens from token types 3 / 4).
std::string tokenizer_json_of(const io::GgufFile& g, const nlohmann::json& pre_tokenizer) {
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array(), merges = nlohmann::json::array();
  const auto& tokens = g.find("tokenizer.ggml.tokens")->items;
  const auto* types = g.find("tokenizer.ggml.token_type");
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& piece = std::get<std::string>(tokens[i]);
    const auto& ty = types->items[i];
    const int64_t type = std::holds_alternative<int64_t>(ty) ? std::get<int64_t>(ty) : int64_t(std::get<uint64_t>(ty));
    if (type == 3 || type == 4) added.push_back({{"id", i}, {"content", piece}, {"special", type == 3}});
    if (!vocab.contains(piece)) vocab[piece] = i;
  }
  for (const auto& m : g.find("tokenizer.ggml.merges")->items) merges.push_back(std::get<std::string>(m));
  return nlohmann::json{{"version", "1.0"},
                        {"added_tokens", added},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", pre_tokenizer},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}
      .dump();
}

}  // namespace

// Byte-level BPE from tokenizer.json: GPT-2's (ByteLevel with its own expression), StarCoder's
// (Digits + ByteLevel) and DeepSeek-Coder's (Split expressions + ByteLevel) pre-tokenizer layouts
// over the same vocabularies give llama.cpp's test vectors exactly.
TEST(Tokenizer, HfTokenizerJsonByteLevelMatchesLlamaCpp) {
  const std::string dir = test::fixtures_dir() + "/tokenizer";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "../shared/fixtures/tokenizer not found";
  using nlohmann::json;
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const json byte_level_no_regex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  const auto split = [](const std::string& re) {
    return json{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  const std::vector<std::pair<std::string, json>> cases = {
      {"ggml-vocab-gpt-2.gguf", byte_level},
      {"ggml-vocab-starcoder.gguf",
       {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}}},
      {"ggml-vocab-deepseek-coder.gguf",
       {{"type", "Sequence"},
        {"pretokenizers", {split("[\r\n]"), split("\\s?\\p{L}+"), split("\\s?\\p{P}+"), split("[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"),
                           {{"type", "Digits"}, {"individual_digits", true}}, byte_level_no_regex}}}},
  };
  for (const auto& [file, pre] : cases) {
    const std::string path = dir + "/" + file;
    if (!std::filesystem::exists(path)) continue;
    SCOPED_TRACE(file);
    const auto g = io::GgufFile::open(path);
    const Tokenizer tok = Tokenizer::parse_hf_json(tokenizer_json_of(g, pre), file + " as tokenizer.json");
    ASSERT_EQ(tok.kind(), Tokenizer::Kind::ByteBpe);
    const std::string inp = io::read_text_file(path + ".inp");
    std::istringstream out(io::read_text_file(path + ".out"));
    const std::string sep = "\n__ggml_vocab_test__\n";
    int pass = 0, total = 0;
    std::string line;
    for (size_t p = 0; std::getline(out, line);) {
      const size_t q = inp.find(sep, p);
      const std::string text = inp.substr(p, q == std::string::npos ? std::string::npos : q - p);
      std::istringstream ls(line);
      std::vector<int> want;
      for (int id; ls >> id;) want.push_back(id);
      ++total;
      pass += tok.encode(text, false) == want;
      EXPECT_EQ(tok.encode(text, false), want) << "[" << text << "]";
      if (q == std::string::npos) break;
      p = q + sep.size();
    }
    std::printf("%-40s tokenizer.json %d/%d identical to llama.cpp\n", file.c_str(), pass, total);
    EXPECT_EQ(total, 46);
  }
  // A tensorzip file carries a byte-level tokenizer (as tokenizer.json) and gives it back.
  const auto g = io::GgufFile::open(dir + "/ggml-vocab-gpt-2.gguf");
  {
    const Tokenizer gpt2 = Tokenizer::from_gguf(g);
    const LlamaSource back = through_tensorzip_file(gpt2, "bpe.tz");
    ASSERT_TRUE(back.tokenizer.has_value());
    EXPECT_EQ(back.tokenizer->kind(), Tokenizer::Kind::ByteBpe);
    for (const char* text : {"Hello world! 123", " 'll've  \n\t x", "Über naïve café 你好"})
      EXPECT_EQ(back.tokenizer->encode(text, true), gpt2.encode(text, true)) << text;
    EXPECT_EQ(back.tokenizer->bos_id(), gpt2.bos_id());
    EXPECT_EQ(back.tokenizer->eos_id(), gpt2.eos_id());
  }
  // … and a WordPiece one (BERT / BGE vocabularies), ids and [CLS] … [SEP] framing included.
  if (const std::string bert = test::fixtures_dir() + "/tokenizer/ggml-vocab-bert-bge.gguf"; std::filesystem::exists(bert)) {
    const Tokenizer wpm = Tokenizer::from_gguf(io::GgufFile::open(bert));
    const LlamaSource back = through_tensorzip_file(wpm, "wpm.tz");
    ASSERT_TRUE(back.tokenizer.has_value());
    EXPECT_EQ(back.tokenizer->kind(), Tokenizer::Kind::WordPiece);
    EXPECT_EQ(back.tokenizer->vocab_size(), wpm.vocab_size());
    for (const char* text : {"Hello world! 123", "Über naïve café 你好", "unaffable [MASK] tokens"})
      EXPECT_EQ(back.tokenizer->encode(text, true), wpm.encode(text, true)) << text;
    EXPECT_EQ(back.tokenizer->bos_id(), wpm.bos_id());
    EXPECT_EQ(back.tokenizer->eos_id(), wpm.eos_id());
    EXPECT_THROW(Tokenizer::from_wordpiece_json(R"({"pieces": ["a"], "cls": 0, "sep": 3, "unk": 0})", "bad.json"), Error);
  }
  // A pre-tokenizer outside the supported set is an error naming it.
  try {
    Tokenizer::parse_hf_json(tokenizer_json_of(g, {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}, byte_level}}}), "t.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'Whitespace'"), std::string::npos) << e.what();
  }
}

}  // namespace tz
