// Byte-level BPE pre-tokenization (GPT-2 style): the text is cut into words by a sequence of
// regular expressions — each applied inside every piece the previous ones left, its matches and
// the text between them both kept as pieces, so no byte is lost (llama.cpp's unicode_regex_split
// rule). The expressions use Unicode properties (\p{L}, \p{N}, \s), run by PCRE2 in UTF + UCP mode.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tz {

class PreTokenizer {
 public:
  // The expression sequence llama.cpp uses for a `tokenizer.ggml.pre` name (gpt-2, llama3 /
  // llama-bpe, qwen2, deepseek-coder, falcon, mpt, starcoder, refact, smollm, command-r, olmo, …);
  // nullopt for a name without one here. `ignore_merges` is set for llama3 (a word that is a
  // token is taken whole).
  static std::optional<std::vector<std::string>> regexes_for(const std::string& pre, bool* ignore_merges = nullptr);
  // Throws tz::Error naming the expression if it does not compile.
  explicit PreTokenizer(std::vector<std::string> regexes);
  std::vector<std::string_view> split(std::string_view text) const;
  const std::vector<std::string>& regexes() const { return regexes_; }

 private:
  struct Compiled;
  std::vector<std::string> regexes_;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace tz
