// Which model-file format a mapped file holds: "gguf", "safetensors" or "llama2c" (see
// io::sniff_format). Shared by inspect and decompose.
#pragma once
#include <string>

#include "tensorzip/io/mapped_file.h"

namespace tz::cli {

inline std::string detect_format(const io::MappedFile& f) { return io::sniff_format(f.data(), f.size()); }

}  // namespace tz::cli
