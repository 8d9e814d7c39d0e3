// Which model-file format a mapped file holds, from its first bytes: "gguf", "safetensors" or
// "llama2c" (the fallback: llama2.c checkpoints have no magic). Shared by inspect and decompose.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "tensorzip/io/mapped_file.h"

namespace tz::cli {

inline std::string detect_format(const io::MappedFile& f) {
  const uint8_t* p = f.data();
  if (f.size() >= 4 && std::memcmp(p, "GGUF", 4) == 0) return "gguf";
  if (f.size() >= 9) {
    uint64_t n;
    std::memcpy(&n, p, 8);
    if (n + 8 <= f.size() && p[8] == '{') return "safetensors";
  }
  return "llama2c";
}

}  // namespace tz::cli
