// libFuzzer target: the llama2.c checkpoint parser must answer any bytes with a parse or a
// tz::Error, and every tensor it accepts must be readable in full.
#include <cstddef>
#include <cstdint>

#include "tensorzip/error.h"
#include "tensorzip/io/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto ck = tz::io::Llama2cCheckpoint::parse(data, size, "fuzz.bin");
    for (const auto& t : ck.tensors()) {
      const tz::Tensor v = ck.tensor(t.name);
      const auto* p = static_cast<const uint8_t*>(v.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < v.nbytes(); ++i) sink = sink ^ p[i];
    }
  } catch (const tz::Error&) {
  }
  return 0;
}
