// libFuzzer target: the PEFT adapter_config.json reader must answer any bytes with a config or a
// tz::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensorzip/error.h"
#include "tensorzip/lowrank_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto ad = tz::parse_peft_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    volatile size_t sink = ad.target_modules.size();
    (void)sink;
  } catch (const tz::Error&) {
  }
  return 0;
}
