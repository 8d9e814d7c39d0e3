// Variants of the FFT convolution family: one row group (PlanCore::lanes rows) per call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/fft/fftconv_impl.h"

namespace tz::kernels::fft {

// workspace: 2 * pc.m complex values of `lanes` floats each (see workspace_floats).
using ConvGroupFn = void (*)(const PlanCore& pc, int64_t group, const RowPtrs& io, float* workspace);
inline size_t workspace_floats(const PlanCore& pc) { return size_t(4 * pc.m) * size_t(pc.lanes); }

void conv_group__ref(const PlanCore&, int64_t, const RowPtrs&, float*);     // 1 lane
void conv_group__avx2(const PlanCore&, int64_t, const RowPtrs&, float*);    // 8 lanes
void conv_group__avx512(const PlanCore&, int64_t, const RowPtrs&, float*);  // 16 lanes

}  // namespace tz::kernels::fft
