// libFuzzer target: tensorzip model files (a safetensors container plus tensorzip metadata) must
// load or fail with tz::Error, and a file that loads must build into a runnable model.
#include <cstddef>
#include <cstdint>

#include "tensorzip/error.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = tz::io::SafetensorsFile::parse(data, size, "fuzz.tz");
    const tz::LlamaSource s = tz::parse_tensorzip(f);
    for (const auto& [name, c] : s.quantized) {
      std::vector<float> w(size_t(c.rows() * c.cols()));
      if (w.size() <= (1u << 20)) c.dequantize(w.data());
    }
  } catch (const tz::Error&) {
  }
  return 0;
}
