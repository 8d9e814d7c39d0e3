// Variants of the low-bit GEMM family (LUT kernels, table builders, dequant baseline).
// A LUT kernel computes 16-row tiles [t0, t1) for nb <= 4 activation columns whose tables are built.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dispatch.h"
#include "tensorzip/convert.h"
#include "tensorzip/mpgemm.h"

namespace tz::kernels {

// Tables of one activation column (docs/kernels.md "LUT mpGEMM"):
//   fast:  int8  tab[k_pad/4][16], one scale ts[b] per block of lut_scale_block(w) activations
//   exact: float tab[k_pad/4][16], ts[b] = 1
// sa[g] = Σ activations of group g (for zero points and ternary's offset).
struct LutColumn {
  const void* tab;
  const float* ts;
  const float* sa;
};

struct LutArgs {
  const LutWeights* w;
  LutMode mode;
  int64_t t0, t1;
  int nb;                  // columns, 1..4
  const LutColumn* cols;   // [nb]
  float* const* y;         // [nb] output rows (length w->rows())
};

using LutKernelFn = void (*)(const LutArgs&);
// Builds one column's tables from x[0..k) (zero beyond k) given the per-block scales ts.
using LutTablesFn = void (*)(const float* x, int64_t k, int64_t k_pad, int64_t scale_block, LutMode mode,
                             const float* ts, void* tab);

void lutgemm_qbg4_f32_f32__ref(const LutArgs&);
void lutgemm_qbg4_f32_f32_16x4__avx512vbmi(const LutArgs&);
void lutgemm_qbg4_f32_f32_16x4__avx2(const LutArgs&);
void luttables_g4_f32__ref(const float*, int64_t, int64_t, int64_t, LutMode, const float*, void*);
void luttables_g4_f32__avx512(const float*, int64_t, int64_t, int64_t, LutMode, const float*, void*);

// Dequant baseline: rows [r0, r1), nb <= 4 columns of x (row stride ldx), gsum[n][g] = Σ x over group.
struct DequantArgs {
  const DequantWeights* w;
  int64_t r0, r1;
  int nb;
  const float* const* x;     // [nb]
  const float* const* gsum;  // [nb]
  float* const* y;           // [nb]
};
using DequantKernelFn = void (*)(const DequantArgs&);
void dqgemm_qb_f32_f32__ref(const DequantArgs&);
void dqgemm_qb_f32_f32_4x4__avx512(const DequantArgs&);

// Int8 path (prefill): whole product, threads inside. Needs mpgemm_int8_supported(w).
using Int8GemmFn = void (*)(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void qgemm_qbg_i8_f32_32x32__amx(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void qgemm_qbg_i8_f32_32x6__avx512vnni(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void qgemm_qbg_i8_f32_16x6__avxvnni(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void qgemm_qbg_i8_f32_16x6__avx2(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void qgemm_qbg_i8_f32__ref(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);

// Internal linkage for every helper below: this header is included by files built with different
// ISA flags, and one inline copy (say, compiled for AVX-512) must not serve them all.
namespace {

// Activations per int8-table scale: 64 (T-MAC's choice: the int32 sum of two chunks is scaled
// once), or 32 when the weight group is 32. Always divides the weight group.
inline int64_t lut_scale_block(const LutWeights& w) { return w.group_cols() % 64 == 0 ? 64 : 32; }

// Offset term of format f: w = s·(q − zero); the LUT computes Σ s·(q − half)·a, so each group adds
// s·(half − zero)·Σa. Symmetric: zero = half (no term); ternary: zero = 1.
inline float lut_half(const QuantFormat& f) { return 0.5f * float((1 << f.bits) - 1); }

// Scale i of a group's stored scales (sb = 4: f32, 2: f16).
inline float stored_scale(const uint8_t* p, int i, int sb) {
  if (sb == 4) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return f16_to_f32_scalar(h);
}
}  // namespace

// Family "mpgemm_lut". Each call computes 16-row tiles (mr) for up to nr activation columns.
struct LutConfig {
  LutKernelFn kernel;
  int mr, nr;
};
// Family "mpgemm_lut_tables".
struct LutTablesConfig {
  LutTablesFn build;
};
// Family "mpgemm_int8". mr × nr: register tile (weight rows × tokens). min_tokens: from how many
// tokens Auto takes this kernel over the LUT kernel chosen beside it, for ≤ 2, ≤ 4 and more bits
// (measured; 0 = never, as for the scalar twin).
struct Int8Config {
  Int8GemmFn gemm;
  int mr, nr;
  int min_tokens[3];
};
// Family "mpgemm_dequant": mr rows × nr columns per block.
struct DequantConfig {
  DequantKernelFn kernel;
  int mr, nr;
};

}  // namespace tz::kernels

namespace tz::detail {
KernelFamily<kernels::LutConfig>& mpgemm_lut_family();
KernelFamily<kernels::LutTablesConfig>& mpgemm_lut_tables_family();
KernelFamily<kernels::Int8Config>& mpgemm_int8_family();
KernelFamily<kernels::DequantConfig>& mpgemm_dequant_family();
}  // namespace tz::detail
