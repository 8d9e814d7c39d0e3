// --gguf-type for the commands that write GGUF (compress, merge): a type name or mixture → the
// ggml type of each tensor and the file's general.file_type.
#pragma once
#include <cctype>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"

namespace tz::cli {

// --gguf-type: one ggml type for every matrix, or a llama.cpp mixture: q4_k_m / q5_k_m put
// attn_v, ffn_down and output in q6_K (llama.cpp gives q6_K to part of them; all, here).
inline std::pair<std::function<uint32_t(const std::string&)>, uint32_t> gguf_types(std::string name) {
  for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  static const std::map<std::string, uint32_t> single = {
      {"f32", io::kGgmlF32},   {"f16", io::kGgmlF16},   {"q4_0", io::kGgmlQ4_0}, {"q4_1", io::kGgmlQ4_1},     {"q5_0", io::kGgmlQ5_0},
      {"q5_1", io::kGgmlQ5_1}, {"q8_0", io::kGgmlQ8_0}, {"q2_k", io::kGgmlQ2_K}, {"q4_k", io::kGgmlQ4_K},     {"q4_k_s", io::kGgmlQ4_K},
      {"q5_k", io::kGgmlQ5_K}, {"q5_k_s", io::kGgmlQ5_K}, {"q6_k", io::kGgmlQ6_K}, {"iq4_nl", io::kGgmlIQ4_NL}, {"iq4_xs", io::kGgmlIQ4_XS}};
  if (auto it = single.find(name); it != single.end()) {
    const uint32_t t = it->second;
    return {[t](const std::string&) { return t; }, ~0u};
  }
  if (name == "q4_k_m" || name == "q5_k_m") {
    const uint32_t base = name == "q4_k_m" ? io::kGgmlQ4_K : io::kGgmlQ5_K;
    return {[base](const std::string& n) {
              const bool wide = n == "output.weight" || n.find(".attn_v.") != std::string::npos || n.find(".ffn_down.") != std::string::npos;
              return wide ? io::kGgmlQ6_K : base;
            },
            name == "q4_k_m" ? 15u : 17u};
  }
  throw Error("--gguf-type '" + name + "' is not written (f32 f16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q4_k q4_k_m q5_k q5_k_m q6_k iq4_nl iq4_xs)");
}

inline constexpr const char* kGgufTypeNames = "f32 f16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q4_k q4_k_m q5_k q5_k_m q6_k iq4_nl iq4_xs";

}  // namespace tz::cli
