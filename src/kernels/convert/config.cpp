// Choices of the convert families and the public entry points.
#include "kernels/convert/convert.h"
#include "tensorzip/convert.h"

namespace tz {
namespace detail {
using namespace kernels;

#define TZ_CONVERT_FAMILY(NAME, CONFIG)                                          \
  KernelFamily<CONFIG>& NAME##_family() {                                        \
    static KernelFamily<CONFIG> f(#NAME, {{#NAME "__avx512", Isa::Avx512, 0, {NAME##__avx512}}, \
                                          {#NAME "__avx2", Isa::Avx2, 0, {NAME##__avx2}},       \
                                          {#NAME "__ref", Isa::Scalar, 0, {NAME##__ref}}});     \
    return f;                                                                    \
  }
TZ_CONVERT_FAMILY(convert_f32_bf16, ToHalfConfig)
TZ_CONVERT_FAMILY(convert_bf16_f32, FromHalfConfig)
TZ_CONVERT_FAMILY(convert_f32_f16, ToHalfConfig)
TZ_CONVERT_FAMILY(convert_f16_f32, FromHalfConfig)
#undef TZ_CONVERT_FAMILY
}  // namespace detail

void f32_to_bf16(const float* s, uint16_t* d, size_t n) { detail::convert_f32_bf16_family().config().convert(s, d, n); }
void bf16_to_f32(const uint16_t* s, float* d, size_t n) { detail::convert_bf16_f32_family().config().convert(s, d, n); }
void f32_to_f16(const float* s, uint16_t* d, size_t n) { detail::convert_f32_f16_family().config().convert(s, d, n); }
void f16_to_f32(const uint16_t* s, float* d, size_t n) { detail::convert_f16_f32_family().config().convert(s, d, n); }

}  // namespace tz
