// Kernels of the llama.cpp-block GEMM (tensorzip/ggml_gemm.h): a row decoder per weight type
// (decode.h) and the integer dot products of decoded rows with int8 activations.
#pragma once
#include <cstdint>

#include "core/dispatch.h"
#include "tensorzip/ggml_gemm.h"

namespace tz::kernels {

// Activations of one token, quantized per 32 values: q[k_pad] int8 (zeros past k), and per
// 16-value sub-block s: d16[s] = the scale of s's 32-block, s16[s] = d16[s]·Σ_{i∈s} q_i.
struct Q8Row {
  const int8_t* q;
  const float* d16;
  const float* s16;
};

// Weights decoded row by row into u8 codes u[k_pad] and a, b [k_pad / 16] (w = a·u + b); the
// kernel then computes, for rows [r0, r1) and every token, y = Σ_s a[s]·d16[s]·Σ u·q + b[s]·s16[s].
struct GgmlRowsArgs {
  const GgmlMatrix* w;
  int64_t r0, r1;
  int64_t n;            // tokens
  const Q8Row* x;       // [n]
  float* y;             // y[t·ldy + r]
  int64_t ldy;
};
using GgmlRowsFn = void (*)(const GgmlRowsArgs&);
void ggmlgemm_blk_i8_f32__ref(const GgmlRowsArgs&);
void ggmlgemm_blk_i8_f32_x8__avx512vnni(const GgmlRowsArgs&);

// One row's decoder for `type` (whole row: cols values), from decode.h, compiled per ISA.
using DecodeRowFn = void (*)(const uint8_t* row, int64_t cols, uint8_t* u, float* a, float* b);
DecodeRowFn ggml_decoder__ref(uint32_t type);
DecodeRowFn ggml_decoder__avx512(uint32_t type);

inline int64_t ggml_k_pad(int64_t cols) { return (cols + 255) / 256 * 256; }

// One token's activations x[k] → Q8Row arrays (q [k_pad], zeros past k; d16 / s16 [k_pad / 16]).
// The three activation block types llama.cpp's CPU backend pairs with the weight types, rounded
// as its are (see quantize_acts in config.cpp): q8_0, q8_1 (q8_0 with the block sum d·Σq kept as
// f16, on the first 16-value half), q8_K (one scale per 256 values; k a multiple of 256).
using QuantizeActsFn = void (*)(const float* x, int64_t k, int64_t k_pad, int8_t* q, float* d16, float* s16);
struct ActQuantizers {
  QuantizeActsFn q8_0, q8_1, q8_k;
};
extern const ActQuantizers kActQuantizersRef, kActQuantizersAvx512;

// Family "ggml_gemm": the row kernel (it picks the per-type decoder of its own ISA inside) and
// the activation quantizers of the same ISA.
struct GgmlGemmConfig {
  GgmlRowsFn rows;
  const ActQuantizers* quant;
};

}  // namespace tz::kernels

namespace tz::detail {
KernelFamily<kernels::GgmlGemmConfig>& ggml_gemm_family();
}  // namespace tz::detail
