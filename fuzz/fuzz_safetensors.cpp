// libFuzzer target: the safetensors parser must answer any bytes with a parse or a tz::Error,
// and every tensor it accepts must be readable in full.
#include <cstddef>
#include <cstdint>

#include "tensorzip/error.h"
#include "tensorzip/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = tz::io::SafetensorsFile::parse(data, size, "fuzz.safetensors");
    for (const auto& e : f.tensors()) {
      const tz::Tensor t = f.tensor(e.name);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
    }
  } catch (const tz::Error&) {
  }
  return 0;
}
