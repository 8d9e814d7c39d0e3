// Variants of the low-bit GEMM family (LUT kernels, table builders, dequant baseline).
// A LUT kernel computes 16-row tiles [t0, t1) for nb <= 4 activation columns whose tables are built.
#pragma once
#include <cstdint>
#include <cstring>

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

void lut_kernel__ref(const LutArgs&);
void lut_kernel__avx512(const LutArgs&);
void lut_kernel__avx2(const LutArgs&);
void lut_tables__ref(const float*, int64_t, int64_t, int64_t, LutMode, const float*, void*);
void lut_tables__avx512(const float*, int64_t, int64_t, int64_t, LutMode, const float*, void*);

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
void dequant_kernel__ref(const DequantArgs&);
void dequant_kernel__avx512(const DequantArgs&);

// Int8 path (prefill): whole product, threads inside. Needs mpgemm_int8_supported(w).
using Int8GemmFn = void (*)(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void mpgemm_int8__amx(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void mpgemm_int8__avx512vnni(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void mpgemm_int8__avxvnni(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void mpgemm_int8__avx2(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);
void mpgemm_int8__ref(const LutWeights&, const float*, int64_t, int64_t, float*, int64_t);

// Offset term of format f: w = s·(q − zero); the LUT computes Σ s·(q − half)·a, so each group adds
// s·(half − zero)·Σa. Symmetric: zero = half (no term); ternary: zero = 1.
// Activations per int8-table scale: 64 (T-MAC's choice: the int32 sum of two chunks is scaled
// once), or 32 when the weight group is 32. Always divides the weight group.
inline int64_t lut_scale_block(const LutWeights& w) { return w.group_cols() % 64 == 0 ? 64 : 32; }

inline float lut_half(const QuantFormat& f) { return 0.5f * float((1 << f.bits) - 1); }

// Scale i of a group's stored scales (sb = 4: f32, 2: f16). Internal linkage: this header is
// included by files built with different ISA flags, and one inline copy must not serve them all.
namespace {
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

}  // namespace tz::kernels
