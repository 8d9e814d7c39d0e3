// --gguf-type for the commands that write GGUF (compress, merge): a type name or mixture → the
// ggml type of each tensor and the file's general.file_type.
#pragma once
#include <fmt/core.h>

#include <cctype>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/llama.h"

namespace tz::cli {

inline constexpr const char* kGgufTypeNames =
    "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q4_k_m q5_k q5_k_m q6_k iq4_nl iq4_xs tq1_0 tq2_0";

// --gguf-type: one ggml type for every matrix, or a llama.cpp mixture: q4_k_m / q5_k_m put
// attn_v, ffn_down and output in q6_K (llama.cpp gives q6_K to part of them; all, here).
inline std::pair<std::function<uint32_t(const std::string&)>, uint32_t> gguf_types(std::string name) {
  for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  static const std::map<std::string, uint32_t> single = {
      {"f32", io::kGgmlF32},   {"f16", io::kGgmlF16},   {"q4_0", io::kGgmlQ4_0}, {"q4_1", io::kGgmlQ4_1},     {"q5_0", io::kGgmlQ5_0},
      {"q5_1", io::kGgmlQ5_1}, {"q8_0", io::kGgmlQ8_0}, {"q2_k", io::kGgmlQ2_K}, {"q4_k", io::kGgmlQ4_K},     {"q4_k_s", io::kGgmlQ4_K},
      {"q5_k", io::kGgmlQ5_K}, {"q5_k_s", io::kGgmlQ5_K}, {"q6_k", io::kGgmlQ6_K}, {"iq4_nl", io::kGgmlIQ4_NL}, {"iq4_xs", io::kGgmlIQ4_XS},
      {"bf16", io::kGgmlBF16}, {"q3_k", io::kGgmlQ3_K}, {"q3_k_s", io::kGgmlQ3_K}, {"tq1_0", io::kGgmlTQ1_0}, {"tq2_0", io::kGgmlTQ2_0}};
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
  throw Error("GGUF type '" + name + "' is not written (" + std::string(kGgufTypeNames) + ")");
}


// The per-tensor report of a GGUF write: fallbacks, the largest added error, the file's bits/weight.
// The bits/weight, the matrices whose codes were written as they are, the largest error a
// re-quantization added, and every fallback (stderr: stdout may carry --json).
inline void print_gguf_report(const GgufWriteReport& r, const std::string& path) {
  const GgufTensorWritten* worst = nullptr;
  int kept = 0;
  for (const auto& t : r.tensors) {
    kept += t.codes_kept;
    if (!t.codes_kept && (!worst || t.rel_error > worst->rel_error)) worst = &t;
  }
  std::string note;
  if (kept > 0) note += fmt::format("; {} matrices keep their codes", kept);
  if (worst && worst->rel_error > 0) note += fmt::format("; largest added error {:.3g} ({}, {}, re-quantized)", worst->rel_error, worst->name, worst->written);
  fmt::print(stderr, "{}: {:.2f} bits/weight{}\n", path, r.bits_per_weight, note);
  for (const auto& t : r.tensors)
    if (t.requested != t.written)
      fmt::print(stderr, "  {}: its rows do not fit {}; written as {} (llama-quantize's fallback)\n", t.name, t.requested, t.written);
}

}  // namespace tz::cli
