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

#include "tensorzip/tensor.h"

namespace tz {

// Y[n,m] = X[n,k] · W[m,k]ᵀ. Leading dimensions in elements (>= k for X and W, >= m for Y).
void gemm_f32(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
              int64_t ldw, float* y, int64_t ldy);
void gemm_bf16(int64_t n, int64_t m, int64_t k, const uint16_t* x, int64_t ldx, const uint16_t* w,
               int64_t ldw, float* y, int64_t ldy);
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
