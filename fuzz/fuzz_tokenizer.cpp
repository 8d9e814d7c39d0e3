// libFuzzer target: the tokenizer readers (llama2.c tokenizer.bin; tokenizer.json when the input
// starts with '{') must answer any bytes with a tokenizer or a tz::Error, and a tokenizer they
// accept must encode and decode without failing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensorzip/error.h"
#include "tensorzip/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tz::Tokenizer t = size > 0 && data[0] == '{'
                                ? tz::Tokenizer::parse_hf_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json")
                                : tz::Tokenizer::parse_llama2c(data, size, "fuzz.bin");
    const auto ids = t.encode("Once upon a time, \xc3\xa9 \xff!", true, true);
    size_t total = t.decode(ids).size();
    for (size_t i = 1; i < ids.size(); ++i) total += t.decode_piece(ids[i - 1], ids[i]).size();
    volatile size_t sink = total;
    (void)sink;
  } catch (const tz::Error&) {
  }
  return 0;
}
