// libFuzzer target: a request body for tensorzip serve (completions, chat, tokenize, detokenize)
// must parse into a checked request or give a RequestError naming the field — nothing a client
// sends may crash the server.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tools/cli/serve_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (int kind = 0; kind < 4; ++kind) {
    try {
      if (kind < 2) {
        const auto r = tz::cli::parse_completion_request(body, kind == 1);
        volatile size_t sink = r.prompt.size() + r.messages.size() + r.stop.size();
        (void)sink;
      } else if (kind == 2) {
        (void)tz::cli::parse_tokenize_request(body);
      } else {
        (void)tz::cli::parse_detokenize_request(body);
      }
    } catch (const tz::Error&) {
    }
  }
  return 0;
}
