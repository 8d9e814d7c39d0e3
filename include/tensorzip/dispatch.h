// Introspection of run-time kernel dispatch: which variants each op has and which one runs now
// under the active ISA cap. `tensorzip info` prints this; tests use it to prove the cap switches.
#pragma once
#include <string>
#include <vector>

namespace tz {

struct KernelVariantInfo {
  std::string name;     // e.g. "gemm_bf16_bf16_f32__amx"
  std::string isa;      // level it needs
  bool available;       // machine has it and the cap allows it
};
struct KernelOpInfo {
  std::string op;       // e.g. "gemm_bf16"
  std::string chosen;   // the variant that runs now
  std::vector<KernelVariantInfo> variants;  // in preference order
};
std::vector<KernelOpInfo> kernel_dispatch_table();
// The variant `op` dispatches to now (throws tz::Error for an unknown op).
std::string chosen_kernel(const std::string& op);

}  // namespace tz
