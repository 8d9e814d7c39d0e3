// The dtype traits table: adding a dtype adds a row here.
#include "tensorzip/dtype.h"

#include <array>

#include "tensorzip/error.h"

namespace tz {
namespace {

// Order must follow enum DType.
constexpr std::array<DTypeTraits, size_t(DType::COUNT)> kTraits = {{
    {DType::F32, "F32", 32, 1, 4, true, false},
    {DType::F16, "F16", 16, 1, 2, true, false},
    {DType::BF16, "BF16", 16, 1, 2, true, false},
    {DType::F64, "F64", 64, 1, 8, true, false},
    {DType::I8, "I8", 8, 1, 1, false, false},
    {DType::U8, "U8", 8, 1, 1, false, false},
    {DType::I16, "I16", 16, 1, 2, false, false},
    {DType::I32, "I32", 32, 1, 4, false, false},
    {DType::I64, "I64", 64, 1, 8, false, false},
    {DType::BOOL, "BOOL", 8, 1, 1, false, false},
    {DType::F8_E4M3, "F8_E4M3", 8, 1, 1, true, false},
    {DType::F8_E5M2, "F8_E5M2", 8, 1, 1, true, false},
    {DType::Q1, "Q1", 1, 8, 1, false, true},
    {DType::Q2, "Q2", 2, 4, 1, false, true},
    {DType::Q3, "Q3", 3, 8, 3, false, true},
    {DType::Q4, "Q4", 4, 2, 1, false, true},
    {DType::Q5, "Q5", 5, 8, 5, false, true},
    {DType::Q6, "Q6", 6, 4, 3, false, true},
    {DType::Q7, "Q7", 7, 8, 7, false, true},
    {DType::Q8, "Q8", 8, 1, 1, false, true},
    {DType::TERNARY, "TERNARY", 2, 4, 1, false, true},
    // ggml blocks: 32 values; q4_0 = f16 scale + 16 bytes, q8_0 = f16 scale + 32 bytes.
    {DType::GGML_Q4_0, "GGML_Q4_0", 4, 32, 18, false, true},
    {DType::GGML_Q8_0, "GGML_Q8_0", 8, 32, 34, false, true},
}};

constexpr bool traits_in_order() {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (size_t(kTraits[i].dtype) != i) return false;
  return true;
}
static_assert(traits_in_order(), "dtype traits table must follow enum DType");

}  // namespace

const DTypeTraits& dtype_traits(DType t) {
  require(size_t(t) < kTraits.size(), "invalid dtype value " + std::to_string(int(t)));
  return kTraits[size_t(t)];
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& tr : kTraits)
    if (name == tr.name) return tr.dtype;
  return std::nullopt;
}

size_t dtype_bytes(DType t, size_t n) {
  const DTypeTraits& tr = dtype_traits(t);
  const size_t blocks = (n + tr.block_values - 1) / tr.block_values;
  return blocks * tr.block_bytes;
}

size_t dtype_size(DType t) {
  const DTypeTraits& tr = dtype_traits(t);
  require(!tr.is_packed, std::string("dtype ") + tr.name + " has no per-element size (packed)");
  return tr.block_bytes;
}

DType packed_dtype(int bits) {
  require(bits >= 1 && bits <= 8, "packed bit width must be 1..8, got " + std::to_string(bits));
  return DType(int(DType::Q1) + bits - 1);
}

int packed_bits(DType t) {
  if (t == DType::TERNARY) return 2;
  if (int(t) >= int(DType::Q1) && int(t) <= int(DType::Q8)) return int(t) - int(DType::Q1) + 1;
  return 0;
}

}  // namespace tz
