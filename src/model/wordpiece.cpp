// WordPiece pre-processing over ICU (see wordpiece.h).
#include "model/wordpiece.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include "tensorzip/error.h"

namespace tz {
namespace {

// BERT's "Chinese character" blocks (the CJK ideograph ranges of Hugging Face's BasicTokenizer,
// including its 0x2B920 start of Extension E that llama.cpp keeps for parity).
bool is_cjk(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_control(UChar32 c) {  // \p{C} without unassigned code points
  const int8_t t = u_charType(c);
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_PRIVATE_USE_CHAR || t == U_SURROGATE;
}

bool is_symbol(UChar32 c) {  // \p{S}
  const int8_t t = u_charType(c);
  return t == U_MATH_SYMBOL || t == U_CURRENCY_SYMBOL || t == U_MODIFIER_SYMBOL || t == U_OTHER_SYMBOL;
}

void append_utf8(std::string& s, UChar32 c) {
  char buf[4];
  int32_t n = 0;
  UBool err = false;
  U8_APPEND(buf, n, 4, c, err);
  if (!err) s.append(buf, size_t(n));
}

}  // namespace

std::vector<std::string> wordpiece_words(std::string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
  require(U_SUCCESS(status) && nfd != nullptr, std::string("ICU: no NFD normalizer (") + u_errorName(status) + ")");
  std::vector<std::string> words(1);
  icu::UnicodeString dec;
  for (int32_t i = 0; i < int32_t(text.size());) {
    UChar32 c;
    U8_NEXT(reinterpret_cast<const uint8_t*>(text.data()), i, int32_t(text.size()), c);
    if (c < 0) c = 0xFFFD;  // invalid UTF-8
    if (nfd->getDecomposition(c, dec) && dec.length() > 0) c = dec.char32At(0);
    if (u_isUWhiteSpace(c)) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    const UChar32 lower = u_tolower(c);
    if (u_ispunct(c) || (c < 0x7F && is_symbol(c)) || is_cjk(c)) {
      if (!words.back().empty()) words.emplace_back();
      append_utf8(words.back(), lower);
      words.emplace_back();
    } else {
      append_utf8(words.back(), lower);
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace tz
