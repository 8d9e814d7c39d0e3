// libFuzzer target: the GGUF parser must answer any bytes with a parse or a tz::Error; accepted
// tensors of readable types are converted to f32 in full, and metadata is rendered.
#include <cstddef>
#include <cstdint>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = tz::io::GgufFile::parse(data, size, "fuzz.gguf");
    for (const auto& kv : f.metadata()) (void)kv.value.to_string();
    for (const auto& t : f.tensors()) {
      const auto* p = f.tensor_data(t);
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ p[i];
      try {
        (void)f.tensor_f32(t.name);
      } catch (const tz::Error&) {
      }
    }
  } catch (const tz::Error&) {
  }
  return 0;
}
