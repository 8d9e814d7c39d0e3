// Variants of the dense GEMM family: Y[n,m] = X[n,k] · W[m,k]ᵀ (see include/tensorzip/gemm.h).
// Each variant takes the whole problem; native ones split it over the pool with gemm_parallel_m.
#pragma once
#include <cstdint>
#include <functional>

#include "core/dispatch.h"

namespace tz::kernels {

struct GemmF32Args { int64_t n, m, k; const float* x; int64_t ldx; const float* w; int64_t ldw; float* y; int64_t ldy; };
struct GemmBf16Args {
  int64_t n, m, k; const uint16_t* x; int64_t ldx; const uint16_t* w; int64_t ldw; float* y; int64_t ldy;
  const uint16_t* w_tiles = nullptr;  // W already in pair panels (bf16_pack_pairs)
};
// Pair panels (avx512bf16.cpp; read by the AVX-512-BF16 12x32 and the AMX kernels): W [m, k] as
// ceil(m/32) slabs of bf16_pair_slab_elems(k) values, [half][k pair][16 cols][2].
int64_t bf16_pair_slab_elems(int64_t k);
int64_t bf16_packed_elems(int64_t m, int64_t k);
void bf16_pack_pair_slab(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, int64_t r0, uint16_t* out);
void bf16_pack_pairs(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, uint16_t* out);
// The same from f32 (rounded to bf16), W = w [m, k], or W = wᵀ with w [k, m] when transposed.
void bf16_pack_pairs_f32(const float* w, int64_t ldw, int64_t m, int64_t k, bool transposed, uint16_t* out);
using GemmF32Fn = void (*)(const GemmF32Args&);
using GemmBf16Fn = void (*)(const GemmBf16Args&);

void gemm_f32_f32_f32__ref(const GemmF32Args&);
void gemm_f32_f32_f32_4x3__avx2(const GemmF32Args&);
void gemm_f32_f32_f32__openblas(const GemmF32Args&);
bool openblas_kernels_fit_cap();   // OpenBLAS's own core type is allowed under the ISA cap

void gemm_bf16_bf16_f32__ref(const GemmBf16Args&);
void gemm_bf16_bf16_f32_4x3__avx2(const GemmBf16Args&);
void gemm_bf16_bf16_f32_4x4__avx512bf16(const GemmBf16Args&);
void gemm_bf16_bf16_f32_12x32__avx512bf16(const GemmBf16Args&);
void gemm_bf16_bf16_f32_32x32__amx(const GemmBf16Args&);

// Family "gemm_f32". mr × nr: the micro-kernel's register tile (X rows × W rows; 0 × 0 where a
// library chooses its own). own_threads: the kernel runs a thread pool of its own (OpenBLAS's
// OpenMP team), so callers inside a pool task take the next choice (gemm_f32_in_task).
struct GemmF32Config {
  GemmF32Fn gemm;
  int mr, nr;
  bool own_threads = false;
};
// Family "gemm_bf16". A choice with a packer reads W from GemmBf16Args::w_tiles in the layout the
// packer writes, named by packed_layout (PackedBf16Weights keeps only that copy and its layout's
// name); without one W is read as given.
struct GemmBf16Config {
  GemmBf16Fn gemm;
  int mr, nr;
  const char* packed_layout = nullptr;
  int64_t (*packed_elems)(int64_t m, int64_t k) = nullptr;
  void (*pack)(const uint16_t* w, int64_t ldw, int64_t m, int64_t k, uint16_t* out) = nullptr;
  void (*pack_f32)(const float* w, int64_t ldw, int64_t m, int64_t k, bool transposed, uint16_t* out) = nullptr;
};

// Runs tile(m0, m1) over [0, m) in chunks aligned to `align` rows, on the thread pool.
void gemm_parallel_m(int64_t m, int64_t align, int64_t n, int64_t k,
                     const std::function<void(int64_t m0, int64_t m1)>& tile);

}  // namespace tz::kernels

namespace tz::detail {
KernelFamily<kernels::GemmF32Config>& gemm_f32_family();
KernelFamily<kernels::GemmBf16Config>& gemm_bf16_family();
}  // namespace tz::detail
