// Dense GEMM, the baseline every low-bit kernel is measured against. Layout follows a linear
// layer (PyTorch nn.Linear): activations X (n x k, row-major), weights W (m x k, row-major),
// output Y (n x m):  Y = X · Wᵀ  ("NT"). n = tokens (1 for decoding), m = output features.
//
// f32 is backed by OpenBLAS (sgemm) where its kernels fit under the active ISA cap, else by our
// own AVX2 or scalar kernels. bf16 (operands bf16, accumulation and output f32) runs our AMX /
// AVX-512-BF16 / AVX2 kernels: Debian's OpenBLAS 0.3.21 is built without sbgemm.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensorzip/memory.h"
#include "tensorzip/tensor.h"

namespace tz {

// Y[n,m] = X[n,k] · W[m,k]ᵀ. Leading dimensions in elements (>= k for X and W, >= m for Y).
void gemm_f32(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
              int64_t ldw, float* y, int64_t ldy);
// The same for callers inside a parallel_for task (e.g. one attention head per task): only our
// own kernels, which run inline there, never a library with a thread pool of its own (OpenBLAS's
// OpenMP team would spin against ours).
void gemm_f32_in_task(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
                      int64_t ldw, float* y, int64_t ldy);
void gemm_bf16(int64_t n, int64_t m, int64_t k, const uint16_t* x, int64_t ldx, const uint16_t* w,
               int64_t ldw, float* y, int64_t ldy);
// bf16 weights reused across many products (an iterative solver, a layer at every step): packed
// once into pair panels where the chosen kernel reads them (AMX, AVX-512-BF16), so gemm_bf16 on
// them skips the per-call repacking; elsewhere the plain copy of W is used.
struct PackedBf16Weights {
  int64_t m = 0, k = 0;
  std::vector<uint16_t> w;      // [m, k] as given, when not packed into tiles
  LargeVector<uint16_t> tiles;  // the chosen kernel's packed layout (then w is empty), or empty
  std::string layout;           // that layout's name: the weights run on any kernel that reads it
};
PackedBf16Weights pack_bf16_weights(const uint16_t* w, int64_t m, int64_t k, int64_t ldw);
// The same straight from f32 weights (rounded to nearest-even bf16): W = w [m, k] (row stride ldw),
// or, with transposed, W = wᵀ where w is [k, m] — no bf16 or transposed copy in between.
PackedBf16Weights pack_bf16_weights_f32(const float* w, int64_t m, int64_t k, int64_t ldw, bool transposed = false);
void gemm_bf16(int64_t n, const uint16_t* x, int64_t ldx, const PackedBf16Weights& w, float* y, int64_t ldy);

// Tensor form: x [n,k], w [m,k] of the same dtype (F32 or BF16); returns y [n,m] F32.
Tensor linear(const Tensor& x, const Tensor& w);

// The scalar references (double accumulation): the oracle every path is tested against.
void gemm_f32_ref(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
                  int64_t ldw, float* y, int64_t ldy);
void gemm_bf16_ref(int64_t n, int64_t m, int64_t k, const uint16_t* x, int64_t ldx,
                   const uint16_t* w, int64_t ldw, float* y, int64_t ldy);
// OpenBLAS core type it chose at load time (e.g. "SkylakeX").
std::string openblas_core_name();
// OpenBLAS sgemm directly (the library baseline), whatever the ISA cap.
void gemm_f32_openblas(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx,
                       const float* w, int64_t ldw, float* y, int64_t ldy);

}  // namespace tz
