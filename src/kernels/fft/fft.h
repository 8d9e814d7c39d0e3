// Variants of the FFT convolution family: one row group (PlanCore::lanes rows) per call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"
#include "kernels/fft/fftconv_impl.h"

namespace tz::kernels::fft {

// workspace: pc.m complex values of `lanes` floats each (see workspace_floats).
using ConvGroupFn = void (*)(const PlanCore& pc, int64_t group, const RowPtrs& io, float* workspace);
inline size_t workspace_floats(const PlanCore& pc) { return size_t(2 * pc.m) * size_t(pc.lanes); }

void fftconv_r32_radix4__ref(const PlanCore&, int64_t, const RowPtrs&, float*);     // 1 lane
void fftconv_r32_radix4_8rows__avx2(const PlanCore&, int64_t, const RowPtrs&, float*);    // 8 lanes
void fftconv_r32_radix4_16rows__avx512(const PlanCore&, int64_t, const RowPtrs&, float*);  // 16 lanes

// One stage of a group over a range (see fftconv_impl.h Stage): for groups that get split across
// the pool because there are fewer groups than threads.
using ConvStageFn = void (*)(const PlanCore& pc, int stage, int64_t group, const RowPtrs& io, float* workspace, int64_t r0,
                             int64_t r1, bool corr);
void conv_stage__ref(const PlanCore&, int, int64_t, const RowPtrs&, float*, int64_t, int64_t, bool);
void conv_stage__avx2(const PlanCore&, int, int64_t, const RowPtrs&, float*, int64_t, int64_t, bool);
void conv_stage__avx512(const PlanCore&, int, int64_t, const RowPtrs&, float*, int64_t, int64_t, bool);

// Backward: the input gradient reuses the forward kernel with corr = true.
using CorrGroupFn = void (*)(const PlanCore& pc, int64_t group, const RowPtrs& io, float* workspace);
void corr_group__ref(const PlanCore&, int64_t, const RowPtrs&, float*);
void corr_group__avx2(const PlanCore&, int64_t, const RowPtrs&, float*);
void corr_group__avx512(const PlanCore&, int64_t, const RowPtrs&, float*);
// The filter gradient for channels [h0, h0 + rows): dk[h][0..nk) = Σ_b corr(dy ⊙ v, u ⊙ w).
using DkGroupFn = void (*)(const PlanCore& pc, int64_t h0, int rows, int64_t batch, const float* dy, const float* v,
                           const float* u, const float* w, int64_t nk, float* dk, float* workspace);
inline size_t dk_workspace_floats(const PlanCore& pc) { return size_t(4 * pc.m + 3) * 2 * size_t(pc.lanes); }
void dk_group__ref(const PlanCore&, int64_t, int, int64_t, const float*, const float*, const float*, const float*, int64_t, float*, float*);
void dk_group__avx2(const PlanCore&, int64_t, int, int64_t, const float*, const float*, const float*, const float*, int64_t, float*, float*);
void dk_group__avx512(const PlanCore&, int64_t, int, int64_t, const float*, const float*, const float*, const float*, int64_t, float*, float*);

// The filters' spectra of one group (see fftconv_impl.h filter_spectrum); ws: spectrum_workspace_floats.
using SpectrumGroupFn = void (*)(const PlanCore& pc, const float* const* rows, int nrows, float* dst, float* workspace);
inline size_t spectrum_workspace_floats(const PlanCore& pc) { return size_t(2 * pc.m + 1) * 2 * size_t(pc.lanes); }
void spectrum_group__ref(const PlanCore&, const float* const*, int, float*, float*);
void spectrum_group__avx2(const PlanCore&, const float* const*, int, float*, float*);
void spectrum_group__avx512(const PlanCore&, const float* const*, int, float*, float*);

// Family "fftconv": the fp32 kernels of one lane width together (the plan's spectra are laid out
// for `lanes` rows per group, so all four must share it).
struct FftConvConfig {
  ConvGroupFn conv;
  CorrGroupFn corr;
  DkGroupFn dk;
  ConvStageFn stage;
  SpectrumGroupFn spectrum;
  int lanes;
};

}  // namespace tz::kernels::fft

namespace tz::detail {
KernelFamily<kernels::fft::FftConvConfig>& fftconv_family();
}  // namespace tz::detail
