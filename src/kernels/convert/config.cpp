// Dispatch table of the convert family and the public entry points.
#include "core/dispatch.h"
#include "kernels/convert/convert.h"
#include "tensorzip/convert.h"

namespace tz {
namespace detail {
using namespace kernels;

#define TZ_CONVERT_OP(NAME)                                                         \
  KernelOp& NAME##_op() {                                                           \
    static KernelOp op(#NAME, {{#NAME "__avx512", Isa::Avx512, 0, to_any(NAME##__avx512)}, \
                               {#NAME "__avx2", Isa::Avx2, 0, to_any(NAME##__avx2)},       \
                               {#NAME "__ref", Isa::Scalar, 0, to_any(NAME##__ref)}});     \
    return op;                                                                      \
  }
TZ_CONVERT_OP(convert_f32_bf16)
TZ_CONVERT_OP(convert_bf16_f32)
TZ_CONVERT_OP(convert_f32_f16)
TZ_CONVERT_OP(convert_f16_f32)
#undef TZ_CONVERT_OP
}  // namespace detail

void f32_to_bf16(const float* s, uint16_t* d, size_t n) {
  detail::convert_f32_bf16_op().get<kernels::F32ToHalfFn>()(s, d, n);
}
void bf16_to_f32(const uint16_t* s, float* d, size_t n) {
  detail::convert_bf16_f32_op().get<kernels::HalfToF32Fn>()(s, d, n);
}
void f32_to_f16(const float* s, uint16_t* d, size_t n) {
  detail::convert_f32_f16_op().get<kernels::F32ToHalfFn>()(s, d, n);
}
void f16_to_f32(const uint16_t* s, float* d, size_t n) {
  detail::convert_f16_f32_op().get<kernels::HalfToF32Fn>()(s, d, n);
}

}  // namespace tz
