// Scalar reference of the fused LoRA kernels (one lane).
#include "kernels/lora/lora_impl.h"

namespace tz::kernels::lora {
namespace {
struct Vec1 {
  static constexpr int L = 1;
  float v;
  static Vec1 zero() { return {0.f}; }
  static Vec1 set1(float x) { return {x}; }
  static Vec1 load(const float* p) { return {*p}; }
  static Vec1 load(const uint16_t* p) { return {bf16_widen(*p)}; }
  static float widen(float v) { return v; }
  static float widen(uint16_t v) { return bf16_widen(v); }
  void store(float* p) const { *p = v; }
  static Vec1 fma(Vec1 a, Vec1 b, Vec1 c) { return {a.v * b.v + c.v}; }
  friend Vec1 operator+(Vec1 a, Vec1 b) { return {a.v + b.v}; }
  float sum() const { return v; }
};
}  // namespace
extern const Kernels lora_bgmv_f32__ref{shrink<Vec1>, expand<Vec1>};
}  // namespace tz::kernels::lora
