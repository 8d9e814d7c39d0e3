// Long convolution through the FFT, fused per row: y = irfft(rfft(u) · rfft(k)) for every (b, h)
// row of u[B, H, N] with the filter k[h], as in FlashFFTConv. A plan is built once per
// (N, H, filters, options) and caches the filters' spectra; conv() then streams u -> y with one
// read of u and one write of y, the forward transform, the spectral product and the inverse
// transform happening while a group of rows is in cache.
//
// Status (see docs/kernels.md "FFT convolution"): fp32 convolution and its backward (du, dk, gated
// variant), causal and circular, partial filters, frequency masks, Hyena gating; in-place
// depth-first radix-4 FFT vectorized across 16 rows (AVX-512), 8 (AVX2) or one row (scalar); bf16
// convolution as a Monarch (radix-16 DFT-matrix) FFT on AMX tiles, one row at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace tz {

enum class ConvMode {
  Causal,    // linear convolution, output the first N samples (inputs zero-padded to 2N)
  Circular,  // circular convolution of period N
};

// The input dtype a plan is built for. Bf16 plans also build the AMX Monarch tables (when the CPU
// has AMX and m >= 256) that conv_bf16 runs on; any plan accepts either input.
enum class ConvDtype { F32, Bf16 };
// Which kernel conv_bf16 of a Bf16 plan uses. Auto: the direct (Toeplitz) convolution on AMX tiles
// where its O(n·nk) tile work is estimated cheaper than an FFT (short rows, e.g. n = 1K, and
// short filters: partial convolution), else the AMX Monarch FFT from m = 2048 complex points on
// (n >= 2048 causal, >= 4096 circular), else the fp32 16-row kernel (converting on load).
// Direct: the direct AMX kernel whenever the CPU has AMX, n is a multiple of 512 and there is no
// frequency mask. Monarch: the Monarch FFT whenever the CPU has AMX and m >= 256. F32Kernel: never
// a matrix-unit kernel.
enum class ConvBf16Path { Auto, Monarch, F32Kernel, Direct };

struct FftConvOptions {
  ConvMode mode = ConvMode::Causal;
  // Frequency-sparse convolution: one flag per block of kFreqMaskBlock spectrum bins
  // (bins 0 .. N (causal) or 0 .. N/2 (circular)); a 0 zeroes the filter's spectrum there and the
  // spectral product of those bins is skipped. Empty = dense.
  std::vector<uint8_t> freq_mask;
  ConvDtype dtype = ConvDtype::F32;
  ConvBf16Path bf16_path = ConvBf16Path::Auto;
};
constexpr int64_t kFreqMaskBlock = 64;

class FftConvPlan {
 public:
  // n: power of two, 8 <= n <= 2^22. k: [h, nk] filters, row-major, 1 <= nk <= n (a shorter
  // filter is a partial convolution: the same as zero-padding it to n). Throws tz::Error on bad
  // arguments.
  static FftConvPlan create(int64_t n, int64_t h, const float* k, int64_t nk, const FftConvOptions& opt = {});

  // y[b, h, :] = conv(u[b, h, :], k[h]);   u, y: [b, H, N] contiguous f32. y may alias u.
  void conv(const float* u, int64_t b, float* y) const;
  // Hyena-style gating fused in:  y = v ⊙ conv(u ⊙ w, k);  v, w: [b, H, N].
  void conv_gated(const float* u, const float* v, const float* w, int64_t b, float* y) const;
  // bf16 inputs, f32 output. A plan built with dtype Bf16 on an AMX CPU runs the direct
  // convolution or the Monarch FFT on AMX tiles (bf16 operands, fp32 accumulation; relative error
  // ~2e-3 / ~4e-3: the filter is rounded to bf16); otherwise the fp32 kernel with the inputs
  // converted inside the row loads.
  void conv_bf16(const uint16_t* u, int64_t b, float* y) const;
  // The kernel conv_bf16 runs.
  const char* kernel_bf16() const;

  // Backward of y = conv(u, k) given dy = ∂L/∂y: du = corr(dy, k) (skipped when du is null) and
  // dk[h, 0..nk) = Σ_b corr(dy, u) — the filter gradient reduced over the batch (overwritten).
  void backward(const float* u, const float* dy, int64_t b, float* du, float* dk) const;
  // Backward of the gated form y = v ⊙ conv(u ⊙ w, k): du, dv, dw [b, H, N] and dk [H, nk].
  void backward_gated(const float* u, const float* v, const float* w, const float* dy, int64_t b, float* du, float* dv,
                      float* dw, float* dk) const;

  int64_t n() const;
  int64_t h() const;
  int64_t filter_length() const;
  ConvMode mode() const;
  // Extra memory one thread uses while convolving (per-thread, independent of B and H): conv()
  // (F32) or conv_bf16() (Bf16). The plan keeps the workspaces its calls used, for the next call,
  // until it is destroyed (as an FFTW plan keeps its buffers); concurrent calls each take their own.
  size_t workspace_bytes_per_thread(ConvDtype dtype = ConvDtype::F32) const;
  const char* kernel() const;  // the kernel variant the plan was built for

  struct Impl;
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// float64 reference: direct O(N·Nk) convolution (causal or circular) of one row.
void fftconv_direct_ref(const float* u, int64_t n, const float* k, int64_t nk, ConvMode mode, double* y);

}  // namespace tz
