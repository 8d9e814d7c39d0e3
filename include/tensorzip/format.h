// QuantFormat: how packed low-bit codes become numbers. Weights W (rows x cols) are quantized per
// row in groups of `group` values along the contiguous dimension; each group has a scale and,
// for asymmetric formats, a zero point:   w = scale * (q - zero)        (asymmetric)
//                                         w = scale * (q - (2^b-1)/2)   (symmetric, bipolar levels)
//                                         w = scale * t, t in {-1,0,1} (ternary)
// This is the reference (plain, row-major LSB-first) layout; kernels repack it (issue: mpGEMM).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensorzip/dtype.h"

namespace tz {

struct QuantFormat {
  int bits = 4;             // 1..8 (ternary: 2 bits of storage)
  int group = 128;          // values per group along a row; 0 means the whole row
  bool symmetric = true;    // false: per-group zero point
  bool ternary = false;
  DType scale_dtype = DType::F32;  // F32 or F16

  int group_size(int64_t cols) const { return group == 0 ? int(cols) : group; }
  DType code_dtype() const { return ternary ? DType::TERNARY : packed_dtype(bits); }
  std::string to_string() const;  // e.g. "q4 g128 sym f32-scales"
  std::string spec() const;       // the short name `--weights` takes: "q4g128", "q3g32a", "t" (row), "tg64"
  void validate(int64_t rows, int64_t cols) const;  // throws tz::Error on a bad combination
};

// A quantized matrix in the reference layout: codes packed per row (row stride = packed_row_bytes).
struct QuantMatrix {
  QuantFormat fmt;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;   // rows * packed_row_bytes(cols)
  std::vector<float> scales;    // rows * groups_per_row
  std::vector<float> zeros;     // rows * groups_per_row (asymmetric only), in code units
  int64_t groups_per_row() const;
  size_t packed_row_bytes() const;
};

// Reference pack/unpack of b-bit codes (values < 2^b), LSB-first. pack(unpack(x)) == x exactly.
void pack_codes_ref(const uint8_t* codes, int64_t n, int bits, uint8_t* out);
void unpack_codes_ref(const uint8_t* packed, int64_t n, int bits, uint8_t* out);

// Rows rows[0], rows[1], … of q (codes, scales and zeros as they are): permuting or splitting a
// quantized matrix's outputs.
QuantMatrix select_rows(const QuantMatrix& q, const std::vector<int64_t>& rows);

// Round-to-nearest quantization of a row-major f32 matrix, and its exact inverse on the grid.
QuantMatrix quantize_rtn_ref(const float* w, int64_t rows, int64_t cols, const QuantFormat& fmt);
void dequantize_ref(const QuantMatrix& q, float* out);

}  // namespace tz
