// Dispatch table of the dense GEMM family and the public entry points (argument checks live here,
// once, not in each variant).
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/dispatch.h"
#include "kernels/gemm/gemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace detail {
using namespace kernels;

KernelFamily<GemmF32Config>& gemm_f32_family() {
  static KernelFamily<GemmF32Config> f("gemm_f32", {
      {"gemm_f32_f32_f32__openblas", Isa::Scalar, 0, {gemm_f32_f32_f32__openblas, 0, 0, true}, openblas_kernels_fit_cap},
      {"gemm_f32_f32_f32_4x3__avx2", Isa::Avx2, 0, {gemm_f32_f32_f32_4x3__avx2, 4, 3}},
      {"gemm_f32_f32_f32__ref", Isa::Scalar, 0, {gemm_f32_f32_f32__ref, 1, 1}},
  });
  return f;
}

// Both matrix-unit and AVX-512-BF16 kernels read W in pair panels: weights packed on one run on the other.
constexpr const char* kPairPanels = "bf16_pair_panels_32";

KernelFamily<GemmBf16Config>& gemm_bf16_family() {
  static KernelFamily<GemmBf16Config> f("gemm_bf16", {
      {"gemm_bf16_bf16_f32_32x32__amx", Isa::Amx, kAmxBf16 | kAvx512Bf16,
       {gemm_bf16_bf16_f32_32x32__amx, 32, 32, kPairPanels, bf16_packed_elems, bf16_pack_pairs, bf16_pack_pairs_f32}},
      {"gemm_bf16_bf16_f32_12x32__avx512bf16", Isa::Avx512, kAvx512Bf16,
       {gemm_bf16_bf16_f32_12x32__avx512bf16, 12, 32, kPairPanels, bf16_packed_elems, bf16_pack_pairs, bf16_pack_pairs_f32}},
      {"gemm_bf16_bf16_f32_4x3__avx2", Isa::Avx2, 0, {gemm_bf16_bf16_f32_4x3__avx2, 4, 3}},
      {"gemm_bf16_bf16_f32__ref", Isa::Scalar, 0, {gemm_bf16_bf16_f32__ref, 1, 1}},
  });
  return f;
}

}  // namespace detail

namespace {

void check_args(const char* op, int64_t n, int64_t m, int64_t k, const void* x, int64_t ldx,
                const void* w, int64_t ldw, const void* y, int64_t ldy) {
  const std::string p = std::string(op) + ": ";
  require(n >= 0 && m >= 0 && k >= 0, p + "negative dimension");
  require(n <= std::numeric_limits<int32_t>::max() && m <= std::numeric_limits<int32_t>::max() &&
              k <= std::numeric_limits<int32_t>::max(), p + "dimension exceeds 2^31-1");
  require(ldx >= k && ldw >= k && ldy >= m, p + "leading dimension smaller than the row length");
  require((n == 0 || k == 0 || x) && (m == 0 || k == 0 || w) && (n == 0 || m == 0 || y), p + "null pointer");
}

}  // namespace

void gemm_f32(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
              int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_f32", n, m, k, x, ldx, w, ldw, y, ldy);
  if (n == 0 || m == 0) return;
  detail::gemm_f32_family().config().gemm({n, m, k, x, ldx, w, ldw, y, ldy});
}

void gemm_f32_in_task(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
                      int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_f32_in_task", n, m, k, x, ldx, w, ldw, y, ldy);
  if (n == 0 || m == 0) return;
  // With one thread the library runs single-threaded too: nothing to spin against.
  const bool alone = num_threads() == 1;
  detail::gemm_f32_family().config_if([&](const kernels::GemmF32Config& c) { return alone || !c.own_threads; }).gemm(
      {n, m, k, x, ldx, w, ldw, y, ldy});
}

void gemm_bf16(int64_t n, int64_t m, int64_t k, const uint16_t* x, int64_t ldx, const uint16_t* w,
               int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_bf16", n, m, k, x, ldx, w, ldw, y, ldy);
  if (n == 0 || m == 0) return;
  detail::gemm_bf16_family().config().gemm({n, m, k, x, ldx, w, ldw, y, ldy});
}


PackedBf16Weights pack_bf16_weights(const uint16_t* w, int64_t m, int64_t k, int64_t ldw) {
  require(m >= 0 && k >= 0 && ldw >= k && (w != nullptr || m * k == 0), "pack_bf16_weights: need W [m, k] with ldw >= k");
  PackedBf16Weights p;
  p.m = m;
  p.k = k;
  const auto& cfg = detail::gemm_bf16_family().config();
  if (m * k > 0 && cfg.pack != nullptr) {
    p.tiles.resize(size_t(cfg.packed_elems(m, k)));
    cfg.pack(w, ldw, m, k, p.tiles.data());
    p.layout = cfg.packed_layout;
    return p;
  }
  p.w.resize(size_t(m * k));
  for (int64_t i = 0; i < m; ++i) std::copy(w + i * ldw, w + i * ldw + k, p.w.begin() + i * k);
  return p;
}

PackedBf16Weights pack_bf16_weights_f32(const float* w, int64_t m, int64_t k, int64_t ldw, bool transposed) {
  require(m >= 0 && k >= 0 && ldw >= (transposed ? m : k) && (w != nullptr || m * k == 0),
          "pack_bf16_weights_f32: need w [m, k] (or [k, m] transposed) with a large enough row stride");
  PackedBf16Weights p;
  p.m = m;
  p.k = k;
  const auto& cfg = detail::gemm_bf16_family().config();
  if (m * k > 0 && cfg.pack_f32 != nullptr) {
    p.tiles.resize(size_t(cfg.packed_elems(m, k)));
    cfg.pack_f32(w, ldw, m, k, transposed, p.tiles.data());
    p.layout = cfg.packed_layout;
    return p;
  }
  p.w.resize(size_t(m * k));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < k; ++j) p.w[size_t(i * k + j)] = f32_to_bf16_scalar(transposed ? w[j * ldw + i] : w[i * ldw + j]);
  return p;
}

void gemm_bf16(int64_t n, const uint16_t* x, int64_t ldx, const PackedBf16Weights& w, float* y, int64_t ldy) {
  if (n == 0 || w.m == 0) return;
  const auto& cfg = detail::gemm_bf16_family().config();
  if (!w.tiles.empty()) {
    // Packed for the kernel chosen then; it must still be the chosen one (a cap lowered since is
    // an error: the plain copy of W was not kept).
    require(cfg.packed_layout != nullptr && w.layout == cfg.packed_layout,
            "gemm_bf16: these weights were packed as " + w.layout + ", which the kernel chosen now (" +
                detail::gemm_bf16_family().chosen_name() + ") does not read; pack again");
    check_args("gemm_bf16", n, w.m, w.k, x, ldx, w.tiles.data(), w.k, y, ldy);
    kernels::GemmBf16Args a{n, w.m, w.k, x, ldx, nullptr, w.k, y, ldy};
    a.w_tiles = w.tiles.data();
    return cfg.gemm(a);
  }
  check_args("gemm_bf16", n, w.m, w.k, x, ldx, w.w.data(), w.k, y, ldy);
  cfg.gemm({n, w.m, w.k, x, ldx, w.w.data(), w.k, y, ldy});
}

void gemm_f32_ref(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx, const float* w,
                  int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_f32_ref", n, m, k, x, ldx, w, ldw, y, ldy);
  kernels::gemm_f32_f32_f32__ref({n, m, k, x, ldx, w, ldw, y, ldy});
}

void gemm_bf16_ref(int64_t n, int64_t m, int64_t k, const uint16_t* x, int64_t ldx,
                   const uint16_t* w, int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_bf16_ref", n, m, k, x, ldx, w, ldw, y, ldy);
  kernels::gemm_bf16_bf16_f32__ref({n, m, k, x, ldx, w, ldw, y, ldy});
}

void gemm_f32_openblas(int64_t n, int64_t m, int64_t k, const float* x, int64_t ldx,
                       const float* w, int64_t ldw, float* y, int64_t ldy) {
  check_args("gemm_f32_openblas", n, m, k, x, ldx, w, ldw, y, ldy);
  kernels::gemm_f32_f32_f32__openblas({n, m, k, x, ldx, w, ldw, y, ldy});
}

Tensor linear(const Tensor& x, const Tensor& w) {
  require(x.ndim() == 2 && w.ndim() == 2, "linear: x and w must be 2-D, got " +
                                              shape_to_string(x.shape()) + " and " + shape_to_string(w.shape()));
  require(x.dtype() == w.dtype(), std::string("linear: dtype mismatch ") + dtype_name(x.dtype()) +
                                      " vs " + dtype_name(w.dtype()));
  require(x.dim(1) == w.dim(1), "linear: inner dimensions differ: x " + shape_to_string(x.shape()) +
                                    ", w " + shape_to_string(w.shape()));
  require(x.is_contiguous() && w.is_contiguous(), "linear: operands must be contiguous");
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  Tensor y = Tensor::empty(DType::F32, {n, m});
  if (k == 0) {
    std::memset(y.raw(), 0, y.nbytes());
    return y;
  }
  switch (x.dtype()) {
    case DType::F32: gemm_f32(n, m, k, x.data<float>(), k, w.data<float>(), k, y.data<float>(), m); break;
    case DType::BF16: gemm_bf16(n, m, k, x.data<uint16_t>(), k, w.data<uint16_t>(), k, y.data<float>(), m); break;
    default: throw Error(std::string("linear: unsupported dtype ") + dtype_name(x.dtype()) + " (F32 or BF16)");
  }
  return y;
}

}  // namespace tz
