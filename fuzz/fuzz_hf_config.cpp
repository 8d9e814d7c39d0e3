// libFuzzer target: a Hugging Face config.json must give a validated LLaMA config or a tz::Error
// (deep nesting, floats where integers belong, non-finite numbers included).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tensorzip/error.h"
#include "tensorzip/llama.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tz::HfConfig h = tz::parse_hf_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    volatile int sink = h.cfg.kv_dim();
    (void)sink;
  } catch (const tz::Error&) {
  }
  return 0;
}
