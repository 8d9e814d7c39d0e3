// Run-time CPU features and ISA levels. Detection uses CPUID *and* XGETBV (the OS must save the
// wider register state), and asks Linux for permission to use AMX tile data before any thread
// touches a tile. TENSORZIP_ISA=scalar|avx2|avxvnni|avx512f|avx512vnni|avx512|amx caps what every
// dispatch sees: a level plus the extensions the cap lets through (avx2: no AVX-VNNI; avx512f: AVX-512
// F/BW/VL/DQ only; avx512vnni adds VNNI and VBMI; avx512 adds BF16 and FP16; amx: everything).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tz {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws tz::Error on an unknown name

// Individual features; levels are bundles of these (docs/kernels.md).
enum Feature : uint32_t {
  kFma = 1u << 0, kF16c = 1u << 1, kAvx2 = 1u << 2, kBmi2 = 1u << 3,
  kAvx512F = 1u << 4, kAvx512BW = 1u << 5, kAvx512VL = 1u << 6, kAvx512DQ = 1u << 7,
  kAvx512Vnni = 1u << 8, kAvx512Bf16 = 1u << 9, kAvx512Vbmi = 1u << 10, kAvxVnni = 1u << 11,
  kAmxTile = 1u << 12, kAmxBf16 = 1u << 13, kAmxInt8 = 1u << 14, kAvx512Fp16 = 1u << 15,
};

struct CpuInfo {
  std::string vendor, brand;
  uint32_t features = 0;          // what CPUID + OS state allow
  bool amx_permission = false;    // Linux granted XTILEDATA to this process
  Isa max_isa = Isa::Scalar;      // best level this machine supports
  Isa active_isa = Isa::Scalar;   // min(max_isa, TENSORZIP_ISA cap)
  bool capped = false;            // TENSORZIP_ISA was set
  std::string cap = "amx";        // the cap's name (isa_cap_names())
  uint32_t cap_extras = 0;        // extensions beyond the level's own that the cap lets through
  bool has(uint32_t f) const { return (features & f) == f; }
};

// Detected once (thread-safe); the AMX permission request happens inside.
const CpuInfo& cpu_info();
// Features available under the active cap: features above active_isa's level are masked off.
uint32_t active_features();
// Re-read TENSORZIP_ISA (tests); also re-resolves every dispatch table.
void reset_isa_cap_for_testing(Isa cap);
void reset_isa_cap_for_testing(const std::string& cap);  // one of isa_cap_names()
// The caps TENSORZIP_ISA takes, lowest first.
std::vector<std::string> isa_cap_names();
std::vector<std::string> feature_names(uint32_t features);

// Features each level needs (a variant may ask for more, e.g. Avx512Bf16).
uint32_t isa_level_features(Isa isa);

}  // namespace tz
