// Choices of the multi-adapter LoRA family (its drivers: src/lowrank/adapters.cpp for adapter
// banks, src/kernels/mpgemm/config.cpp for the low-rank epilogue of the low-bit GEMM).
#include "kernels/lora/lora.h"

namespace tz::detail {
using namespace kernels::lora;

KernelFamily<Kernels>& lora_bgmv_family() {
  static KernelFamily<Kernels> f("lora_bgmv", {
      {"lora_bgmv_f32__avx512", Isa::Avx512, 0, lora_bgmv_f32__avx512},
      {"lora_bgmv_f32__avx2", Isa::Avx2, 0, lora_bgmv_f32__avx2},
      {"lora_bgmv_f32__ref", Isa::Scalar, 0, lora_bgmv_f32__ref},
  });
  return f;
}

}  // namespace tz::detail
