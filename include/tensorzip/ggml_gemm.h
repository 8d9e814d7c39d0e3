// Low-bit GEMM on llama.cpp's own weight blocks (q4_0 … q6_K, iq4_nl, iq4_xs, tq1_0, tq2_0), read
// in place: no repacking, so a model's resident weights are the file's bytes.
//
//   Y[n, m] = X[n, k] · Ŵ[m, k]ᵀ      Ŵ = the blocks' dequantized values (io::dequantize_ggml)
//
// Activations are quantized per token to int8 in 32-value blocks (one f32 scale each, round to
// nearest); each weight row is decoded into u8 codes with a scale and offset per 16-value
// sub-block (w = a·u + b: uniform codes as they are, the IQ4 codebooks' int8 levels + 128), and
// the products are u8×s8 integer dot products (AVX-512 VNNI), scaled per sub-block in f32.
// Error: that of int8 activations (≲ 1e-2 relative to max|y|, asserted in tests) — the same
// numerics as llama.cpp's CPU backend, which quantizes activations to q8_0 / q8_K.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tz {

// A matrix [rows, cols] stored as llama.cpp blocks of one type, rows contiguous. The bytes are
// either its own copy or borrowed from a mapped file that `owner` keeps alive (zero copy).
struct GgmlMatrix {
  uint32_t type = 0;
  int64_t rows = 0, cols = 0;

  // Copies rows·row_bytes bytes from `blocks`; throws tz::Error for a type ggml_gemm does not take
  // or cols that are not whole blocks (naming `what`).
  static GgmlMatrix from_blocks(uint32_t type, int64_t rows, int64_t cols, const uint8_t* blocks, const std::string& what);
  // The same checks, no copy: `blocks` must live as long as `owner` does.
  static GgmlMatrix borrow(uint32_t type, int64_t rows, int64_t cols, const uint8_t* blocks, std::shared_ptr<const void> owner,
                           const std::string& what);
  size_t row_bytes() const { return row_bytes_; }
  const uint8_t* data() const { return blocks_; }
  const uint8_t* row(int64_t r) const { return blocks_ + size_t(r) * row_bytes_; }
  size_t bytes() const { return size_t(rows) * row_bytes_; }
  void dequantize(float* w) const;                       // [rows, cols]
  void dequantize_row(int64_t r, float* w) const;        // [cols]
  const char* type_name() const;

 private:
  size_t row_bytes_ = 0;
  const uint8_t* blocks_ = nullptr;
  std::shared_ptr<const void> owner_;
};

bool ggml_gemm_supported(uint32_t type);

// Y[n, m] = X[n, k] · Ŵᵀ, X row stride ldx >= k, Y row stride ldy >= m. Threads inside.
void ggml_gemm(const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy);

// The scalar oracle with the same activation quantization (tests compare every ISA path to it).
void ggml_gemm_ref(const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy);

}  // namespace tz
