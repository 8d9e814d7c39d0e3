// Element types of tensorzip tensors and their traits. Packed low-bit weights (1..8 bits per value,
// ternary) are first-class dtypes: a tensor of such a dtype holds the packed codes, and its
// QuantFormat (format.h) says how groups, scales and zero points turn codes back into numbers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tz {

enum class DType : uint8_t {
  F32, F16, BF16, F64,
  I8, U8, I16, I32, I64, BOOL,
  F8_E4M3, F8_E5M2,
  // Packed codes, LSB-first along the contiguous dimension (docs/formats.md).
  Q1, Q2, Q3, Q4, Q5, Q6, Q7, Q8,
  TERNARY,  // codes {0,1,2} meaning {-1,0,+1}, 2 bits per value
  // GGUF block types, kept so files round-trip and can be converted (ggml_blocks.h).
  GGML_Q4_0, GGML_Q8_0,
  COUNT
};

struct DTypeTraits {
  DType dtype;
  const char* name;        // tensorzip / safetensors spelling, e.g. "F32", "BF16", "Q4"
  uint32_t bits;           // storage bits per value (block types: bits of the block / block size rounded)
  uint32_t block_values;   // values per indivisible storage block (1 for plain types)
  uint32_t block_bytes;    // bytes per block (0 for sub-byte packed codes: see packed_bytes)
  bool is_float;
  bool is_packed;          // sub-byte codes or ggml blocks: no per-element strides
};

const DTypeTraits& dtype_traits(DType t);
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes needed to store n values of type t laid out contiguously (rounded up to whole blocks/bytes).
size_t dtype_bytes(DType t, size_t n);
// Size in bytes of one element; only for non-packed dtypes.
size_t dtype_size(DType t);
// The packed-code dtype with the given bit width (1..8).
DType packed_dtype(int bits);
// Bit width of a packed-code dtype (TERNARY -> 2), 0 for others.
int packed_bits(DType t);

}  // namespace tz
