// Scalar FFT convolution (one row per group), the reference twin of the SIMD path, and the float64
// direct convolution used as the oracle in tests.
#include <vector>

#include "kernels/fft/fft.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"

namespace tz {
namespace kernels::fft {
namespace {

struct Vec1 {
  static constexpr int L = 1, B = 2;
  float v;
  static Vec1 set1(float x) { return {x}; }
  static Vec1 zero() { return {0.f}; }
  static Vec1 load(const float* p) { return {p[0]}; }
  void store(float* p) const { p[0] = v; }
  static Vec1 fma(Vec1 a, Vec1 b, Vec1 c) { return {a.v * b.v + c.v}; }
  static Vec1 fms(Vec1 a, Vec1 b, Vec1 c) { return {a.v * b.v - c.v}; }
  friend Vec1 operator+(Vec1 a, Vec1 b) { return {a.v + b.v}; }
  friend Vec1 operator-(Vec1 a, Vec1 b) { return {a.v - b.v}; }
  friend Vec1 operator*(Vec1 a, Vec1 b) { return {a.v * b.v}; }
  // Samples t0 .. t0+cnt-1 of the (single) row, gated.
  static void load_block(const float* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec1* out) {
    for (int i = 0; i < cnt; ++i) out[i] = {rows > 0 ? (g[0] ? u[0][t0 + i] * g[0][t0 + i] : u[0][t0 + i]) : 0.f};
  }
  static void load_block_bf16(const uint16_t* const* u, const float* const* g, int rows, int64_t t0, int cnt, Vec1* out) {
    for (int i = 0; i < cnt; ++i) {
      const float x = rows > 0 ? bf16_to_f32_scalar(u[0][t0 + i]) : 0.f;
      out[i] = {rows > 0 && g[0] ? x * g[0][t0 + i] : x};
    }
  }
  static void store_block(float* const* y, const float* const* g, int rows, int64_t t0, int cnt, const Vec1* in,
                          bool /*stream*/ = false) {
    for (int i = 0; i < cnt && rows > 0; ++i) y[0][t0 + i] = g[0] ? in[i].v * g[0][t0 + i] : in[i].v;
  }
};

}  // namespace

void fftconv_r32_radix4__ref(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec1>*>(ws);
  conv_group<Vec1>(pc, group, io, z);
}


void corr_group__ref(const PlanCore& pc, int64_t group, const RowPtrs& io, float* ws) {
  auto* z = reinterpret_cast<Cx<Vec1>*>(ws);
  conv_group<Vec1>(pc, group, io, z, /*corr=*/true);
}

void dk_group__ref(const PlanCore& pc, int64_t h0, int rows, int64_t batch, const float* dy, const float* v, const float* u,
                   const float* w, int64_t nk, float* dk, float* ws) {
  dk_group<Vec1>(pc, h0, rows, batch, dy, v, u, w, nk, dk, reinterpret_cast<Cx<Vec1>*>(ws));
}


void conv_stage__ref(const PlanCore& pc, int stage, int64_t group, const RowPtrs& io, float* ws, int64_t r0, int64_t r1,
                    bool corr) {
  conv_stage<Vec1>(pc, Stage(stage), group, io, reinterpret_cast<Cx<Vec1>*>(ws), r0, r1, corr);
}

void spectrum_group__ref(const PlanCore& pc, const float* const* rows, int nrows, float* dst, float* ws) {
  filter_spectrum<Vec1>(pc, rows, nrows, dst, reinterpret_cast<Cx<Vec1>*>(ws));
}

}  // namespace kernels::fft

void fftconv_direct_ref(const float* u, int64_t n, const float* k, int64_t nk, ConvMode mode, double* y) {
  require(n > 0 && nk > 0 && nk <= n, "fftconv_direct_ref: need 0 < nk <= n");
  for (int64_t t = 0; t < n; ++t) {
    double acc = 0;
    for (int64_t j = 0; j < nk; ++j) {
      int64_t s = t - j;
      if (s < 0) {
        if (mode == ConvMode::Causal) break;
        s += n;
      }
      acc += double(k[j]) * double(u[s]);
    }
    y[t] = acc;
  }
}

}  // namespace tz

