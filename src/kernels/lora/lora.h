// Fused multi-adapter LoRA (S-LoRA / Punica BGMV): rows grouped by adapter; the shrink
// h = x·Aᵀ and the expand y += s·h·Bᵀ of one adapter's rows as gathered GEMV/GEMM tasks.
#pragma once
#include <cstdint>

#include "core/dispatch.h"

namespace tz::kernels::lora {

struct Task {
  const float* a;      // [rank, in]   (f32 storage)
  const float* bt;     // [rank, out]
  const uint16_t* a16; // the same in bf16 when the bank stores bf16 (a, bt null then)
  const uint16_t* bt16;
  int64_t rank;
  float scale;
  const int32_t* rows; // batch rows using this adapter
  int64_t nrows;
};

struct Kernels {
  // h[t, 0..rank) = A · x[rows[t]]
  void (*shrink)(const Task& t, const float* x, int64_t in, float* h);
  // y[rows[t], o0..o1) += scale · Σ_j h[t, j] · Bt[j, o]; h rows ldh apart, Bt rows `out` apart,
  // y rows ldy apart.
  void (*expand)(const Task& t, const float* h, int64_t ldh, int64_t out, int64_t o0, int64_t o1, float* y, int64_t ldy);
};

// One choice per ISA level: shrink and expand of the same vector width (16, 8, 1 lanes).
extern const Kernels lora_bgmv_f32__avx512;
extern const Kernels lora_bgmv_f32__avx2;
extern const Kernels lora_bgmv_f32__ref;

}  // namespace tz::kernels::lora

namespace tz::detail {
// Family "lora_bgmv": the config is the kernel pair itself (src/kernels/lora/config.cpp).
KernelFamily<kernels::lora::Kernels>& lora_bgmv_family();

}  // namespace tz::kernels::lora
