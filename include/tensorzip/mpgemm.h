// Mixed-precision GEMM: low-bit weights (1–8 bits, ternary) times float activations, without
// dequantizing the weights — through lookup tables (T-MAC / LUT Tensor Core on CPU).
//
//   Y[n, m] = X[n, k] · Ŵ[m, k]ᵀ      Ŵ = the dequantized QuantMatrix (format.h)
//
// Weights are packed once (`LutWeights::pack`) into bit planes laid out for the SIMD lookups
// (docs/formats.md, "LUT layout"); activations are turned into small tables of signed partial
// sums on the fly, inside the kernel. Two table precisions:
//   Fast  — int8 tables, one scale per weight group; integer accumulation (VNNI-friendly).
//           Error ≲ 1e-2 relative to max|y| on Gaussian data (asserted in tests).
//   Exact — f32 tables; equals the dequantized reference to f32 rounding (≤ 1e-5).
// The dequantize-then-FMA baseline (`DequantWeights`, what llama.cpp-style engines do) lives here
// too, on its own byte-aligned layout, so benchmarks compare like with like.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "tensorzip/format.h"

namespace tz {

enum class LutMode { Fast, Exact };

// Which algorithm computes a Fast-mode product. Auto: LUT for decode (few tokens), the int8 path
// (activations quantized per token; AMX TDPBSSD tiles, or VPDPBUSD / VPMADDUBSW on AVX-512-VNNI,
// AVX-VNNI, AVX2) for prefill when the group is a multiple of 64 (or the whole row). Exact mode
// always uses the LUT with f32 tables.
enum class MpGemmPath { Auto, Lut, Int8 };
// Tokens from which Auto switches to the int8 path, for the kernels dispatch picks on this CPU: the
// int8 path decodes the weights once per call (O(m·k)), the LUT path's cost grows with bits x
// tokens. Measured crossovers (4096², 2 threads, docs/benchmarks.md): AMX ~32 tokens at 1–2 bits,
// ~24 at 3–4; AVX-512-VNNI beside the VBMI LUT kernel ~96 at 1–2 bits, ~48 at 3–4, 32 above;
// beside the AVX2 LUT kernel every prefill block (5 tokens on) is faster on the int8 path.
// INT64_MAX where only the scalar twin of the int8 path runs (Auto then never takes it).
int64_t mpgemm_int8_min_tokens(int bits);

class LutWeights {
 public:
  // Throws tz::Error for formats the LUT kernels do not take (group not a multiple of 32 and not
  // the whole row, bits outside 1..8).
  static LutWeights pack(const QuantMatrix& q);
  QuantMatrix unpack() const;  // exact inverse: unpack(pack(q)) == q

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const QuantFormat& format() const { return fmt_; }
  size_t bytes() const { return data_.size(); }  // packed weights + scales (+ zero points)

  // Layout (internal to the kernels; see docs/formats.md).
  int planes() const { return planes_; }
  int64_t k_pad() const { return k_pad_; }           // cols rounded up to 32
  int64_t tiles() const { return (rows_ + 15) / 16; }
  int64_t group_cols() const { return group_cols_; }  // activations per scale group (multiple of 32)
  int64_t groups() const { return (k_pad_ + group_cols_ - 1) / group_cols_; }
  int scale_bytes() const { return fmt_.scale_dtype == DType::F16 ? 2 : 4; }
  bool has_zeros() const { return !fmt_.symmetric && !fmt_.ternary; }
  size_t group_block_bytes() const { return group_block_bytes_; }  // one full group of one 16-row tile
  size_t tile_bytes() const { return tile_bytes_; }
  const uint8_t* tile(int64_t t) const { return data_.data() + size_t(t) * tile_bytes_; }
  size_t group_offset(int64_t g) const { return size_t(g) * group_block_bytes_; }
  // 32-activation chunks in group g (the last group may be shorter).
  int64_t group_chunks(int64_t g) const { return std::min(group_cols_, k_pad_ - g * group_cols_) / 32; }

 private:
  QuantFormat fmt_;
  int64_t rows_ = 0, cols_ = 0, k_pad_ = 0, group_cols_ = 0;
  int planes_ = 0;
  size_t tile_bytes_ = 0, group_block_bytes_ = 0;
  std::vector<uint8_t> data_;
};

// Whether the int8 path takes these weights (planes <= 8, group a multiple of 64 or the whole row).
bool mpgemm_int8_supported(const LutWeights& w);

// A low-rank branch added to the product inside the kernel's output tiles (SVDQuant / EoRA /
// LQ-LoRA compensation, LoRA adapters): Y += H · Lᵀ with H = X · Rᵀ [n, rank] (row stride ldh),
// computed by the caller, and lt = Lᵀ [rank, m] (row stride m). Each task adds the branch to the
// rows of Y it has just written, while they are in cache: no second pass over Y, no second fork.
struct LowRankEpilogue {
  const float* h = nullptr;
  int64_t ldh = 0;
  const float* lt = nullptr;
  int64_t rank = 0;
};

// Y[n,m] = X[n,k] · Ŵᵀ (+ the low-rank branch) with X f32 (row stride ldx >= k) or bf16; Y f32 (row
// stride ldy >= m).
void mpgemm(const LutWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            LutMode mode = LutMode::Fast, MpGemmPath path = MpGemmPath::Auto, const LowRankEpilogue* lowrank = nullptr);
void mpgemm_bf16(const LutWeights& w, const uint16_t* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
                 LutMode mode = LutMode::Fast);

// The oracle: dequantize_ref, then double-accumulation dot products.
void mpgemm_ref(const QuantMatrix& q, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy);

// Dequantize-then-FMA baseline on a byte-aligned layout: per 32-value block, 2-bit crumbs or
// 4-bit nibbles for the low bits plus 1-bit planes for the rest (docs/formats.md).
class DequantWeights {
 public:
  static DequantWeights pack(const QuantMatrix& q);
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const QuantFormat& format() const { return fmt_; }
  size_t bytes() const { return codes_.size() + scales_.size() * sizeof(float) + zeros_.size() * sizeof(float); }
  // Layout accessors for the kernels.
  int64_t blocks() const { return (cols_ + 31) / 32; }
  size_t block_bytes() const { return block_bytes_; }
  const uint8_t* row(int64_t r) const { return codes_.data() + size_t(r) * size_t(blocks()) * block_bytes_; }
  int64_t group_cols() const { return group_cols_; }
  int64_t groups() const { return (cols_ + group_cols_ - 1) / group_cols_; }
  const float* scales(int64_t r) const { return scales_.data() + r * groups(); }
  const float* zeros(int64_t r) const { return zeros_.empty() ? nullptr : zeros_.data() + r * groups(); }

 private:
  QuantFormat fmt_;
  int64_t rows_ = 0, cols_ = 0, group_cols_ = 0;
  size_t block_bytes_ = 0;
  std::vector<uint8_t> codes_;
  std::vector<float> scales_, zeros_;
};

void dequant_gemm(const DequantWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy);

}  // namespace tz
