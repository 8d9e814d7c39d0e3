// BERT's WordPiece pre-processing as llama.cpp's WPM tokenizer does it (the GGUF tokenizer model
// "bert"): each code point replaced by the first code point of its canonical decomposition (accents
// dropped), lower-cased; whitespace ends a word; controls, NUL and U+FFFD are dropped;
// punctuation, ASCII symbols and CJK ideographs become one-character words. Unicode properties,
// decompositions and case mappings come from ICU.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace tz {

std::vector<std::string> wordpiece_words(std::string_view text);

}  // namespace tz
