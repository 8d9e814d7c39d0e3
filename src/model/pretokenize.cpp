// Byte-level BPE pre-tokenization over PCRE2 (see pretokenize.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/pretokenize.h"

#include <pcre2.h>

#include "tensorzip/error.h"

namespace tz {
namespace {

// GPT-2's word rule: contractions, letters, digits, other symbols (each with one leading space),
// whitespace not followed by a word.
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3 / Qwen2: case-insensitive contractions, a letter run with at most one leading
// non-letter, digits in runs of at most three (Qwen2: one), symbols with trailing newlines.
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

struct PreTokenizer::Compiled {
  std::vector<pcre2_code*> codes;
  ~Compiled() {
    for (pcre2_code* c : codes) pcre2_code_free(c);
  }
};

std::optional<std::vector<std::string>> PreTokenizer::regexes_for(const std::string& pre, bool* ignore_merges) {
  if (ignore_merges) *ignore_merges = false;
  const auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (pre == n) return true;
    return false;
  };
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3"})) {
    if (ignore_merges) *ignore_merges = true;
    return std::vector<std::string>{kLlama3};
  }
  if (is({"qwen2", "deepseek-r1-qwen"})) return std::vector<std::string>{kQwen2};
  if (is({"gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de",
          "jina-v2-code", "gigachat"}))
    return std::vector<std::string>{kGpt2};
  if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}))
    return std::vector<std::string>{R"(\p{N})", kGpt2};
  if (pre == "falcon") return std::vector<std::string>{R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"};
  if (pre == "deepseek-coder")
    return std::vector<std::string>{"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N})"};
  if (pre == "deepseek-llm")
    // DeepSeek-LLM's six expressions: newlines; an optional space and a run of cased letters (the
    // tokenizer's explicit ranges enumerate Unicode's cased letters: \p{L&}); an optional space
    // and a run of ASCII / full-width punctuation; trailing whitespace; CJK and Hangul runs; digits.
    return std::vector<std::string>{"[\r\n]", R"(\s?\p{L&}+)",
                                    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)", R"(\s+\z)",
                                    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N}+)"};
  if (pre == "default" || pre.empty())
    return std::vector<std::string>{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
  return std::nullopt;
}

PreTokenizer::PreTokenizer(std::vector<std::string> regexes) : regexes_(std::move(regexes)) {
  auto c = std::make_shared<Compiled>();
  for (const auto& re : regexes_) {
    int err = 0;
    PCRE2_SIZE at = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                     &err, &at, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error("pre-tokenizer expression '" + re + "' does not compile at offset " + std::to_string(at) + ": " +
                  reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // an optimisation only: failure leaves the interpreter
    c->codes.push_back(code);
  }
  compiled_ = std::move(c);
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  if (text.empty()) return {};
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  for (pcre2_code* code : compiled_->codes) {
    std::vector<std::string_view> next;
    for (std::string_view piece : pieces) {
      // Matched within the piece alone: a lookahead does not see past its end (llama.cpp's rule).
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t start = 0, kept = 0;
      while (start < piece.size()) {
        // Bytes that are not UTF-8 never match (PCRE2_MATCH_INVALID_UTF): they stay in the gaps.
        const int rc = pcre2_match(code, subject, piece.size(), start, 0, md, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (e == b) {  // an empty match: step one character on
          start = b + 1;
          while (start < piece.size() && (static_cast<unsigned char>(piece[start]) & 0xc0) == 0x80) ++start;
          continue;
        }
        if (b > kept) next.push_back(piece.substr(kept, b - kept));
        next.push_back(piece.substr(b, e - b));
        kept = start = e;
      }
      if (kept < piece.size()) next.push_back(piece.substr(kept));
    }
    pieces.swap(next);
  }
  pcre2_match_data_free(md);
  return pieces;
}

}  // namespace tz
