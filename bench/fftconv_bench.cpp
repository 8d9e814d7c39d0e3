// FFT convolution benchmark. Baseline: FFTW (FFTW_MEASURE, batched r2c/c2r over all rows, same
// thread count) computing the same causal convolution: pad, r2c, multiply by the cached filter
// spectrum, c2r, scale. Error: max |y − ref| / max |ref| on the first row against a float64 FFT.
#include "bench/fftconv_bench.h"

#include <algorithm>
#include <fftw3.h>
#include <fmt/core.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <random>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/fftconv.h"
#include "tensorzip/memory.h"
#include "tensorzip/runtime.h"

namespace tz::bench {
namespace {

// float64 causal convolution of one row through a complex radix-2 FFT of length 2n.
std::vector<double> conv_ref_f64(const float* u, const float* k, int64_t n) {
  const size_t L = size_t(2 * n);
  const auto fft = [L](std::vector<std::complex<double>>& a, bool inv) {
    for (size_t i = 1, j = 0; i < L; ++i) {
      size_t bit = L >> 1;
      for (; j & bit; bit >>= 1) j ^= bit;
      j ^= bit;
      if (i < j) std::swap(a[i], a[j]);
    }
    for (size_t len = 2; len <= L; len <<= 1) {
      const double ang = (inv ? 2.0 : -2.0) * M_PI / double(len);
      for (size_t i = 0; i < L; i += len)
        for (size_t j = 0; j < len / 2; ++j) {
          const auto w = std::polar(1.0, ang * double(j));
          const auto x = a[i + j], y = a[i + j + len / 2] * w;
          a[i + j] = x + y;
          a[i + j + len / 2] = x - y;
        }
    }
  };
  std::vector<std::complex<double>> a(L), b(L);
  for (int64_t i = 0; i < n; ++i) a[size_t(i)] = u[i], b[size_t(i)] = k[i];
  fft(a, false);
  fft(b, false);
  for (size_t i = 0; i < L; ++i) a[i] *= b[i];
  fft(a, true);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = a[size_t(i)].real() / double(L);
  return y;
}

double err_vs(const float* y, const std::vector<double>& ref) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    err = std::max(err, std::fabs(double(y[i]) - ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

struct Fftw {
  int64_t rows, n, L, h;
  float* pad = nullptr;
  fftwf_complex* spec = nullptr;
  fftwf_complex* kspec = nullptr;  // [h][L/2+1], scaled by 1/L
  fftwf_plan fwd = nullptr, inv = nullptr;
  Fftw(int64_t rows_, int64_t n_, int64_t h_, const std::vector<float>& k, int threads) : rows(rows_), n(n_), L(2 * n_), h(h_) {
    const int64_t bins = L / 2 + 1;
    pad = fftwf_alloc_real(size_t(rows * L));
    spec = fftwf_alloc_complex(size_t(rows * bins));
    kspec = fftwf_alloc_complex(size_t(h * bins));
    fftwf_plan_with_nthreads(threads);
    const int len = int(L);
    fwd = fftwf_plan_many_dft_r2c(1, &len, int(rows), pad, nullptr, 1, int(L), spec, nullptr, 1, int(bins), FFTW_MEASURE);
    inv = fftwf_plan_many_dft_c2r(1, &len, int(rows), spec, nullptr, 1, int(bins), pad, nullptr, 1, int(L), FFTW_MEASURE);
    require(fwd != nullptr && inv != nullptr, "bench fftconv: FFTW planning failed");
    // Filter spectra with a one-off plan.
    float* kp = fftwf_alloc_real(size_t(L));
    fftwf_complex* ks = fftwf_alloc_complex(size_t(bins));  // planned arrays: new-array execute needs their alignment
    fftwf_plan pk = fftwf_plan_dft_r2c_1d(len, kp, ks, FFTW_ESTIMATE);
    for (int64_t c = 0; c < h; ++c) {
      std::memset(kp, 0, size_t(L) * sizeof(float));
      std::memcpy(kp, k.data() + c * n, size_t(n) * sizeof(float));
      fftwf_execute(pk);
      for (int64_t i = 0; i < bins; ++i) kspec[c * bins + i][0] = ks[i][0] / float(L), kspec[c * bins + i][1] = ks[i][1] / float(L);
    }
    fftwf_destroy_plan(pk);
    fftwf_free(ks);
    fftwf_free(kp);
  }
  ~Fftw() {
    fftwf_destroy_plan(fwd);
    fftwf_destroy_plan(inv);
    fftwf_free(pad);
    fftwf_free(spec);
    fftwf_free(kspec);
  }
  void conv(const float* u, float* y) {
    const int64_t bins = L / 2 + 1;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(pad + r * L, u + r * n, size_t(n) * sizeof(float));
      std::memset(pad + r * L + n, 0, size_t(n) * sizeof(float));
    }
    fftwf_execute(fwd);
    for (int64_t r = 0; r < rows; ++r) {
      fftwf_complex* s = spec + r * bins;
      const fftwf_complex* kk = kspec + (r % h) * bins;
      for (int64_t i = 0; i < bins; ++i) {
        const float re = s[i][0] * kk[i][0] - s[i][1] * kk[i][1];
        const float im = s[i][0] * kk[i][1] + s[i][1] * kk[i][0];
        s[i][0] = re, s[i][1] = im;
      }
    }
    fftwf_execute(inv);
    for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * n, pad + r * L, size_t(n) * sizeof(float));
  }
};

}  // namespace

int64_t parse_size(const std::string& s) {
  require(!s.empty(), "empty size");
  int64_t mult = 1;
  std::string d = s;
  if (d.back() == 'K' || d.back() == 'k') mult = 1024, d.pop_back();
  else if (d.back() == 'M' || d.back() == 'm') mult = 1024 * 1024, d.pop_back();
  try {
    size_t pos = 0;
    const long long v = std::stoll(d, &pos);
    require(pos == d.size() && v > 0, "");
    return v * mult;
  } catch (...) {
    throw Error("bad size '" + s + "' (expected e.g. 1024, 4K, 1M)");
  }
}

int fftconv_bench_cases(const FftConvBenchOptions& o) {
  return int(o.b.size() * o.n.size() * std::max<size_t>(1, o.threads.size()));
}

void bench_fftconv(const FftConvBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  for (const auto& d : o.dtypes) require(d == "f32" || d == "bf16", "bench fftconv: --dtype takes f32 and/or bf16, got '" + d + "'");
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  static bool fftw_threads = fftwf_init_threads() != 0;
  require(fftw_threads, "bench fftconv: FFTW threads failed to initialise");
  for (int64_t n : o.n)
    for (int64_t b : o.b) {
      const int64_t h = std::max<int64_t>(1, std::min(o.h, o.max_elements / (b * n)));
      const auto k = gaussian(size_t(h * n), 3, 1.f / std::sqrt(float(n)));
      const auto plan = FftConvPlan::create(n, h, k.data(), n);
      FftConvOptions obf;
      obf.dtype = ConvDtype::Bf16;
      const bool want_bf = std::find(o.dtypes.begin(), o.dtypes.end(), "bf16") != o.dtypes.end();
      const auto plan_bf = want_bf ? FftConvPlan::create(n, h, k.data(), n, obf) : plan;
      // Inputs and output as a framework allocates large tensors (64-byte aligned, huge pages), for
      // FFTW and tensorzip alike.
      const auto ug = gaussian(size_t(b * h * n), 4, 1.f);
      const LargeVector<float> u(ug.begin(), ug.end());
      LargeVector<uint16_t> ub(u.size());
      f32_to_bf16(u.data(), ub.data(), u.size());
      std::vector<float> ubf(u.size());
      bf16_to_f32(ub.data(), ubf.data(), u.size());
      LargeVector<float> y(u.size());
      const auto ref = conv_ref_f64(u.data(), k.data(), n);
      const auto ref_bf = conv_ref_f64(ubf.data(), k.data(), n);
      const std::string shape = fmt::format("b={} h={} n={}", b, h, n);
      const double L = double(2 * n), rows = double(b * h);
      const double flops = rows * 2.0 * 5.0 * (L / 2) * std::log2(L);  // r2c + c2r, 5·N·log2 N convention
      const double bytes = rows * double(n) * 8;                        // one read of u, one write of y
      for (int t : threads) {
        set_num_threads(t);
        progress(fmt::format("fftconv {} threads={}", shape, t));
        Fftw fftw(b * h, n, h, k, t);
        fftw.conv(u.data(), y.data());
        const double ferr = err_vs(y.data(), ref);
        const Timing tf = time_it([&](int) { fftw.conv(u.data(), y.data()); }, o.warmup, o.repeats, o.budget_s);
        Row rf{"fftconv", "fftw_r2c_c2r_measure", "", "f32", shape, "hot", t, tf, flops, bytes, 0, ferr, std::nullopt, {}};
        rf.extra["fftw_extra_bytes"] = double(b * h) * (2.0 * double(n) * 4 + (double(n) + 1) * 8);
        rep.add(rf);
        for (const auto& dt : o.dtypes) {
          const bool bf = dt == "bf16";
          const auto run = [&](int) {
            if (bf) plan_bf.conv_bf16(ub.data(), b, y.data());
            else plan.conv(u.data(), b, y.data());
          };
          run(0);
          const double err = err_vs(y.data(), bf ? ref_bf : ref);
          const Timing tt = time_it(run, o.warmup, o.repeats, o.budget_s);
          Row r{"fftconv", std::string(bf ? plan_bf.kernel_bf16() : plan.kernel()), "fftw", dt, shape, "hot", t, tt, flops,
                bf ? rows * double(n) * 6 : bytes, tf.ms_median, err, std::nullopt, {}};
          r.extra["extra_bytes_peak"] =
              double(bf ? plan_bf.workspace_bytes_per_thread(ConvDtype::Bf16) : plan.workspace_bytes_per_thread()) * t;
          rep.add(r);
        }
      }
    }
}

}  // namespace tz::bench
