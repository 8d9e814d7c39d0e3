// Chat formats against llama.cpp's llama_chat_apply_template (../shared/fixtures/chat-templates):
// every built-in format by name, and the real templates of 17 models through detection.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "tensorzip/chat.h"
#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/mapped_file.h"
#include "tests/test_util.h"

namespace tz {
namespace {

namespace fs = std::filesystem;

std::vector<ChatMessage> conversation(const std::string& dir) {
  std::vector<ChatMessage> msgs;
  for (const auto& m : nlohmann::json::parse(io::read_text_file(dir + "/conversation.json")))
    msgs.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  return msgs;
}

}  // namespace

TEST(Chat, EveryBuiltinFormatRendersAsLlamaCpp) {
  const std::string dir = test::fixtures_dir() + "/chat-templates";
  if (!fs::exists(dir)) GTEST_SKIP() << "../shared/fixtures/chat-templates not found";
  const auto msgs = conversation(dir);
  int checked = 0;
  for (const auto& e : fs::directory_iterator(dir + "/builtin")) {
    const std::string file = e.path().filename().string();
    const std::string name = file.substr(0, file.size() - std::string(".expected.txt").size());
    SCOPED_TRACE(name);
    EXPECT_EQ(detect_chat_template(name), name);
    EXPECT_EQ(apply_chat_template(name, msgs, true), io::read_text_file(e.path().string()));
    ++checked;
  }
  EXPECT_EQ(checked, int(chat_template_names().size()));
}

TEST(Chat, ModelTemplatesAreDetectedAndRendered) {
  const std::string dir = test::fixtures_dir() + "/chat-templates";
  if (!fs::exists(dir)) GTEST_SKIP() << "../shared/fixtures/chat-templates not found";
  const auto msgs = conversation(dir);
  int checked = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".jinja") continue;
    SCOPED_TRACE(e.path().filename().string());
    const std::string name = detect_chat_template(io::read_text_file(e.path().string()));
    ASSERT_FALSE(name.empty());
    const std::string expected = e.path().string().substr(0, e.path().string().size() - 6) + ".expected.txt";
    EXPECT_EQ(apply_chat_template(name, msgs, true), io::read_text_file(expected));
    ++checked;
  }
  EXPECT_EQ(checked, 17);
}

TEST(Chat, UnknownNamesAndTemplates) {
  EXPECT_EQ(detect_chat_template("{{ messages }} with no known markers"), "");
  EXPECT_THROW(apply_chat_template("no-such-format", {}, true), Error);
  EXPECT_EQ(chat_stop_strings("chatml"), std::vector<std::string>{"<|im_end|>"});
}

// Plain generation stops at every format's end-of-turn token the vocabulary has (phi-3: <|end|>,
// <|endoftext|>), and not at text the vocabulary lacks.
TEST(Chat, EndOfTurnPiecesAreTheVocabularysOwn) {
  const std::string path = test::fixtures_dir() + "/tokenizer/ggml-vocab-phi-3.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  const Tokenizer tok = Tokenizer::from_gguf(io::GgufFile::open(path));
  const auto pieces = end_of_turn_pieces(tok);
  for (const char* want : {"<|end|>", "<|endoftext|>"})
    EXPECT_NE(std::find(pieces.begin(), pieces.end(), want), pieces.end()) << want;
  for (const auto& p : pieces) EXPECT_GE(tok.find(p), 0) << p;
  EXPECT_EQ(std::find(pieces.begin(), pieces.end(), "<end_of_turn>"), pieces.end());
  EXPECT_EQ(std::set<std::string>(pieces.begin(), pieces.end()).size(), pieces.size());  // each once
}

}  // namespace tz
