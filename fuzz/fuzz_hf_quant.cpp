// libFuzzer target: an AutoAWQ / GPTQ layer — a safetensors file holding qweight / qzeros / scales
// (/ g_idx) with its quantization_config as the metadata entry "quantization_config" — must unpack
// into a QuantMatrix or give a tz::Error (bad shapes, dtypes, group assignments, NaN scales).
#include <cstddef>
#include <cstdint>

#include "tensorzip/error.h"
#include "tensorzip/io/hf_quant.h"
#include "tensorzip/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = tz::io::SafetensorsFile::parse(data, size, "fuzz.safetensors");
    const auto cfg_text = f.metadata().find("quantization_config");
    if (cfg_text == f.metadata().end()) return 0;
    const tz::io::HfQuantConfig cfg = tz::io::parse_hf_quant_config(cfg_text->second, "fuzz");
    tz::io::HfQuantTensors t;
    const auto get = [&](const char* name) { return f.find(name) ? f.tensor(name) : tz::Tensor(); };
    t.qweight = get("qweight");
    t.qzeros = get("qzeros");
    t.scales = get("scales");
    t.g_idx = get("g_idx");
    if (!t.qweight.defined() || !t.qzeros.defined() || !t.scales.defined()) return 0;
    const tz::io::HfQuantLinear q = tz::io::unpack_hf_quant(cfg, t, "fuzz");
    volatile size_t sink = q.q.codes.size() + q.input_perm.size();
    (void)sink;
  } catch (const tz::Error&) {
  }
  return 0;
}
