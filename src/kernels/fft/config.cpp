// FFT convolution: plan creation (validation, twiddles, filter spectra in float64), dispatch, and
// the driver that hands row groups to the thread pool with one workspace per thread.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <complex>
#include <cstring>
#include <mutex>

#include "kernels/fft/direct.h"
#include "kernels/fft/fft.h"
#include "kernels/fft/monarch.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/fftconv.h"
#include "tensorzip/runtime.h"
#include "tensorzip/tensor.h"

namespace tz {
namespace detail {
using namespace kernels::fft;

KernelFamily<FftConvConfig>& fftconv_family() {
  static KernelFamily<FftConvConfig> f("fftconv", {
      {"fftconv_r32_radix4_16rows__avx512", Isa::Avx512, 0,
       {fftconv_r32_radix4_16rows__avx512, corr_group__avx512, dk_group__avx512, conv_stage__avx512, spectrum_group__avx512, 16}},
      {"fftconv_r32_radix4_8rows__avx2", Isa::Avx2, 0,
       {fftconv_r32_radix4_8rows__avx2, corr_group__avx2, dk_group__avx2, conv_stage__avx2, spectrum_group__avx2, 8}},
      {"fftconv_r32_radix4__ref", Isa::Scalar, 0, {fftconv_r32_radix4__ref, corr_group__ref, dk_group__ref, conv_stage__ref, spectrum_group__ref, 1}},
  });
  return f;
}

// "…_via_f32" / "…_none": no kernel of their own (the names say what runs instead).
KernelFamily<MonarchConfig>& fftconv_bf16_family() {
  static KernelFamily<MonarchConfig> f("fftconv_bf16", {
      {"fftconv_bf16_monarch16_rows__amx", Isa::Amx, 0, {fftconv_bf16_monarch16_rows__amx, make_monarch_plan}},
      {"fftconv_bf16_via_f32__ref", Isa::Scalar, 0, {}},
  });
  return f;
}

KernelFamily<DirectConfig>& fftconv_bf16_direct_family() {
  static KernelFamily<DirectConfig> f("fftconv_bf16_direct", {
      {"fftconv_bf16_direct_toeplitz32__amx", Isa::Amx, 0, {fftconv_bf16_direct_toeplitz32__amx, make_direct_plan}},
      {"fftconv_bf16_direct_none__ref", Isa::Scalar, 0, {}},
  });
  return f;
}
}  // namespace detail

namespace kernels::fft {

Twiddles Twiddles::make(int64_t m) {
  Twiddles t;
  for (int64_t n = m; n >= 4; n /= 4) {
    std::vector<float> w(size_t(6 * (n / 4)));
    for (int64_t p = 0; p < n / 4; ++p)
      for (int r = 1; r <= 3; ++r) {
        const double a = -2.0 * M_PI * double(r * p) / double(n);
        w[size_t(6 * p + 2 * (r - 1))] = float(std::cos(a));
        w[size_t(6 * p + 2 * (r - 1) + 1)] = float(std::sin(a));
      }
    t.stage.push_back(std::move(w));
  }
  return t;
}

namespace {

// From this complex size on, Auto picks the Monarch path for bf16. Measured (one thread, B·H rows
// of bf16, same run): Monarch ÷ fp32 16-row kernel time = 1.13 at m = 1K, 0.81 at 2K, 0.9-1.0 at
// 4K, 0.82 at 16K, 0.71 at 64K.
constexpr int64_t kMonarchAutoMinM = 2048;
// Auto picks the direct AMX convolution when its tile products per row are fewer than this times
// m·log2(m) (the FFT's work). Measured (one thread, bf16, causal, ms: direct / Monarch / fp32
// kernel): n = 1K 0.74 / 1.30 / 1.68; 2K 4.65 / 2.78 / 3.38, with nk = 1K 1.77 / 2.81 / 3.44;
// 16K·64 rows nk = 512 0.76 / 2.28 / 3.38, nk = 2K 2.29 / 2.30 / 3.55; 64K·16 rows nk = 1K
// 1.33 / 3.15 / 5.10, nk = 4K 4.09 / 2.88 / 4.80. The rule picks the faster in each.
constexpr double kDirectPerFftWork = 0.0117;

// Bins 0 .. lr/2 of the DFT of a real sequence of length lr (power of two), float64, radix-2.
std::vector<std::complex<double>> real_dft(const std::vector<double>& x) {
  const size_t n = x.size();
  std::vector<std::complex<double>> a(x.begin(), x.end());
  for (size_t i = 1, j = 0; i < n; ++i) {  // bit reversal
    size_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) std::swap(a[i], a[j]);
  }
  for (size_t len = 2; len <= n; len <<= 1) {
    const std::complex<double> wl = std::polar(1.0, -2.0 * M_PI / double(len));
    for (size_t i = 0; i < n; i += len) {
      std::complex<double> w = 1.0;
      for (size_t j = 0; j < len / 2; ++j) {
        const auto u = a[i + j], v = a[i + j + len / 2] * w;
        a[i + j] = u + v;
        a[i + j + len / 2] = u - v;
        w *= wl;
      }
    }
  }
  a.resize(n / 2 + 1);
  return a;
}

}  // namespace
}  // namespace kernels::fft

namespace {
// Outputs larger than the caches bypass them with non-temporal stores (measured: B=8, H=512,
// N=4K bf16 20 % faster; 16K-1M rows 5-11 %); smaller ones stay cached for whatever reads them
// next. Needs 64-byte aligned rows: y aligned and n a multiple of 16 floats.
bool stream_output(const float* y, int64_t n, int64_t rows) {
  return reinterpret_cast<uintptr_t>(y) % 64 == 0 && n % 16 == 0 && rows * n * 4 >= (int64_t(8) << 20);
}

// Workspaces outlive a call and are freed with the plan, as an FFTW plan keeps its buffers: a 1M-point
// row group's 134 MB allocated per call spent ~12 % of the call in page faults (the kernel zeroing
// fresh pages). Concurrent calls on one plan each take their own buffers.
class WorkspaceCache {
 public:
  std::shared_ptr<void> take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i].first == bytes) {
          auto p = std::move(free_[i].second);
          free_.erase(free_.begin() + std::ptrdiff_t(i));
          return p;
        }
    }
    return aligned_alloc_shared(bytes);
  }
  void give(size_t bytes, std::shared_ptr<void> p) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(bytes, std::move(p));
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<size_t, std::shared_ptr<void>>> free_;
};

// One workspace per pool thread for the length of a call, taken from the cache on first use.
class ThreadWorkspaces {
 public:
  ThreadWorkspaces(WorkspaceCache& cache, size_t bytes) : cache_(cache), bytes_(bytes), ws_(size_t(num_threads())) {}
  ~ThreadWorkspaces() {
    for (auto& p : ws_)
      if (p) cache_.give(bytes_, std::move(p));
  }
  ThreadWorkspaces(const ThreadWorkspaces&) = delete;
  ThreadWorkspaces& operator=(const ThreadWorkspaces&) = delete;
  void* get(int thread) {
    auto& p = ws_[size_t(thread)];
    if (!p) p = cache_.take(bytes_);
    return p.get();
  }

 private:
  WorkspaceCache& cache_;
  size_t bytes_;
  std::vector<std::shared_ptr<void>> ws_;
};
}  // namespace

struct FftConvPlan::Impl {
  mutable WorkspaceCache workspaces;
  kernels::fft::PlanCore core;
  kernels::fft::FftConvConfig fp32{};  // the fp32 kernels the plan's spectra are laid out for
  int64_t nk = 0;
  const char* kernel = "";
  // bf16 Monarch path (dtype Bf16 plans on AMX CPUs only).
  std::unique_ptr<kernels::fft::MonarchPlan> monarch;
  kernels::fft::MonarchRowsFn monarch_fn = nullptr;
  // bf16 direct path (short rows or short filters; AMX CPUs only).
  std::unique_ptr<kernels::fft::DirectPlan> direct;
  kernels::fft::DirectRowsFn direct_fn = nullptr;
  const char* kernel_bf16 = "";
};

FftConvPlan FftConvPlan::create(int64_t n, int64_t h, const float* k, int64_t nk, const FftConvOptions& opt) {
  using namespace kernels::fft;
  require(n >= 8 && n <= (int64_t(1) << 22) && (n & (n - 1)) == 0,
          "fftconv: n must be a power of two from 8 to 4194304, got " + std::to_string(n));
  require(h >= 1, "fftconv: need at least one channel (h >= 1)");
  require(nk >= 1 && nk <= n, "fftconv: filter length " + std::to_string(nk) + " must be 1 .. n = " + std::to_string(n));
  require(k != nullptr, "fftconv: null filter");
  for (int64_t i = 0; i < h * nk; ++i)
    if (!std::isfinite(k[i])) throw Error("fftconv: filter " + std::to_string(i / nk) + " has a non-finite value at " + std::to_string(i % nk));

  auto impl = std::make_shared<Impl>();
  PlanCore& pc = impl->core;
  pc.n = n;
  pc.h = h;
  pc.mode = opt.mode;
  pc.m = opt.mode == ConvMode::Causal ? n : n / 2;
  impl->fp32 = detail::fftconv_family().config();
  impl->kernel = detail::fftconv_family().chosen_name();
  pc.lanes = impl->fp32.lanes;
  impl->nk = nk;
  pc.tw = Twiddles::make(pc.m);
  pc.perm = digit_reversal(pc.m);
  pc.wl.resize(size_t(2 * (pc.m / 2 + 1)));
  for (int64_t i = 0; i <= pc.m / 2; ++i) {
    const double a = -2.0 * M_PI * double(i) / double(2 * pc.m);
    pc.wl[size_t(2 * i)] = float(std::cos(a));
    pc.wl[size_t(2 * i + 1)] = float(std::sin(a));
  }
  if (leaf_pairs(pc.m)) {
    const size_t m = size_t(pc.m);
    pc.iperm.resize(m);
    pc.mirror_pos.resize(m);
    pc.wl_pos.resize(2 * m);
    for (size_t k = 0; k < m; ++k) pc.iperm[size_t(pc.perm[k])] = int32_t(k);
    for (size_t p = 0; p < m; ++p) {
      const size_t k = size_t(pc.iperm[p]);
      pc.mirror_pos[p] = pc.perm[(m - k) % m];
      if (k <= m / 2) {
        pc.wl_pos[2 * p] = pc.wl[2 * k];
        pc.wl_pos[2 * p + 1] = pc.wl[2 * k + 1];
      }
    }
  }
  const int64_t bins = pc.m + 1, blocks = (bins + kFreqMaskBlock - 1) / kFreqMaskBlock;
  if (!opt.freq_mask.empty()) {
    require(int64_t(opt.freq_mask.size()) == blocks, "fftconv: freq_mask needs " + std::to_string(blocks) +
                                                         " blocks of " + std::to_string(kFreqMaskBlock) + " bins, got " +
                                                         std::to_string(opt.freq_mask.size()));
    pc.skip.resize(size_t(blocks));
    for (int64_t b = 0; b < blocks; ++b) pc.skip[size_t(b)] = opt.freq_mask[size_t(b)] == 0;
  }
  // Filter spectra (float64, then scaled by 1/m for the inverse) in the kernel's lane layout.
  const int64_t L = pc.lanes;
  pc.flat_rows = h < L;
  pc.patterns = pc.flat_rows ? h / std::gcd(h, L) : (h + L - 1) / L;
  pc.spec.resize(size_t(pc.patterns) * size_t(bins) * 2 * size_t(L));  // every lane of every bin is written below
  {
    // Filter spectra by the kernels' own forward transform, a group of lanes at a time, on the
    // filters zero-padded to n.
    std::vector<float> padded;
    const float* kr = k;
    if (nk < n) {
      padded.assign(size_t(h * n), 0.f);
      for (int64_t c = 0; c < h; ++c) std::copy(k + c * nk, k + (c + 1) * nk, padded.begin() + c * n);
      kr = padded.data();
    }
    std::vector<LargeVector<float>> ws(static_cast<size_t>(num_threads()));
    parallel_for(pc.patterns, [&](int64_t g, int thread) {
      auto& w = ws[size_t(thread)];
      if (w.empty()) w.resize(spectrum_workspace_floats(pc));
      const float* rows[16] = {};
      int nrows = 0;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t slot = g * L + l, c = pc.flat_rows ? slot % h : slot;
        if (c >= h) break;
        rows[nrows++] = kr + c * n;
      }
      impl->fp32.spectrum(pc, rows, nrows, pc.spec.data() + size_t(g) * size_t(bins) * 2 * size_t(L), w.data());
    });
  }
  impl->kernel_bf16 = impl->kernel;
  if (opt.dtype == ConvDtype::Bf16 && opt.freq_mask.empty() && direct_supported(n) &&
      (opt.bf16_path == ConvBf16Path::Direct || opt.bf16_path == ConvBf16Path::Auto)) {
    const DirectConfig& dc = detail::fftconv_bf16_direct_family().config();
    const bool causal = opt.mode == ConvMode::Causal;
    const double fft_work = double(pc.m) * std::log2(double(pc.m));
    if (dc.rows != nullptr &&
        (opt.bf16_path == ConvBf16Path::Direct || double(direct_tile_products(n, nk, causal)) < kDirectPerFftWork * fft_work)) {
      impl->direct = std::make_unique<DirectPlan>(dc.plan(n, h, k, nk, causal));
      impl->direct_fn = dc.rows;
      impl->kernel_bf16 = detail::fftconv_bf16_direct_family().chosen_name();
    }
  }
  const bool want_monarch = opt.bf16_path == ConvBf16Path::Monarch ||
                            (opt.bf16_path == ConvBf16Path::Auto && pc.m >= kMonarchAutoMinM);
  if (opt.dtype == ConvDtype::Bf16 && !impl->direct && want_monarch && monarch_supported(pc.m)) {
    const MonarchConfig& mc = detail::fftconv_bf16_family().config();
    if (mc.rows != nullptr) {
      // The Monarch tables are built from float64 spectra (rounded to bf16 once, there).
      std::vector<std::vector<std::complex<double>>> spectra(static_cast<size_t>(h));
      parallel_for(h, [&](int64_t c, int) {
        std::vector<double> x(size_t(2 * pc.m), 0.0);
        for (int64_t j = 0; j < nk; ++j) x[size_t(j)] = k[c * nk + j];
        spectra[size_t(c)] = real_dft(x);
      });
      impl->monarch = std::make_unique<MonarchPlan>(
          mc.plan(n, pc.m, h, spectra, pc.skip.empty() ? nullptr : pc.skip.data(), kFreqMaskBlock));
      impl->monarch_fn = mc.rows;
      impl->kernel_bf16 = detail::fftconv_bf16_family().chosen_name();
    }
  }
  FftConvPlan p;
  p.impl_ = impl;
  return p;
}

int64_t FftConvPlan::n() const { return impl_->core.n; }
int64_t FftConvPlan::h() const { return impl_->core.h; }
ConvMode FftConvPlan::mode() const { return impl_->core.mode; }
const char* FftConvPlan::kernel() const { return impl_->kernel; }
size_t FftConvPlan::workspace_bytes_per_thread(ConvDtype dtype) const {
  if (dtype == ConvDtype::Bf16 && impl_->direct) return kernels::fft::direct_workspace_bytes(*impl_->direct);
  if (dtype == ConvDtype::Bf16 && impl_->monarch) return kernels::fft::monarch_workspace_bytes(*impl_->monarch);
  return kernels::fft::workspace_floats(impl_->core) * sizeof(float);
}

namespace {

void run(const FftConvPlan::Impl& impl, const float* u, const float* v, const float* w, int64_t b, float* y,
         bool corr = false, const uint16_t* ub = nullptr) {
  const auto& pc = impl.core;
  require(b >= 0, "fftconv: negative batch");
  require(b == 0 || ((u != nullptr || ub != nullptr) && y != nullptr), "fftconv: null input or output");
  const int64_t L = pc.lanes, rows = b * pc.h;
  // Tasks: groups of L rows — channels h0.. of one batch index, or (few channels) consecutive rows.
  const int64_t groups_per_b = (pc.h + L - 1) / L;
  const int64_t tasks = pc.flat_rows ? (rows + L - 1) / L : b * groups_per_b;
  const int threads = num_threads();
  const bool stream = stream_output(y, pc.n, rows);
  const auto rows_of = [&](int64_t task, int64_t* pattern) {
    kernels::fft::RowPtrs io{};
    io.stream = stream;
    int64_t r0;
    if (pc.flat_rows) {
      r0 = task * L;
      *pattern = task % pc.patterns;
      io.rows = int(std::min<int64_t>(L, rows - r0));
    } else {
      const int64_t bi = task / groups_per_b, g = task % groups_per_b;
      r0 = bi * pc.h + g * L;
      *pattern = g;
      io.rows = int(std::min<int64_t>(L, pc.h - g * L));
    }
    for (int l = 0; l < io.rows; ++l) {
      const size_t off = size_t((r0 + l) * pc.n);
      io.u[l] = u != nullptr ? u + off : nullptr;
      io.ub[l] = ub != nullptr ? ub + off : nullptr;
      io.w[l] = w != nullptr ? w + off : nullptr;
      io.v[l] = v != nullptr ? v + off : nullptr;
      io.y[l] = y + off;
    }
    return io;
  };
  if (tasks < threads && pc.m >= (int64_t(1) << 15)) {
    // Fewer groups than threads and long rows: split each group's stages across the pool.
    using kernels::fft::Stage;
    ThreadWorkspaces ws(impl.workspaces, kernels::fft::workspace_floats(pc) * sizeof(float));
    float* z = static_cast<float*>(ws.get(0));
    const int64_t parts = int64_t(threads) * 2;
    for (int64_t task = 0; task < tasks; ++task) {
      int64_t pattern;
      const kernels::fft::RowPtrs io = rows_of(task, &pattern);
      const auto stage = [&](Stage st, int64_t count, int64_t chunks, int64_t align) {
        parallel_for(chunks, [&](int64_t c, int) {
          const Range r = split_range(count, chunks, c, align);
          if (r.begin < r.end) impl.fp32.stage(pc, int(st), pattern, io, z, r.begin, r.end, corr);
        });
      };
      stage(Stage::Load, pc.m, parts, 8);
      const int64_t nb = kernels::fft::top_blocks(pc.m), nbf = kernels::fft::top_butterflies(pc.m);
      stage(Stage::FwdTop, nbf, parts, 8);  // multiples of 8 butterflies (load_fwd16)
      if (kernels::fft::leaf_pairs(pc.m)) {
        stage(Stage::BlockPairs, 16, 16, 1);
      } else {
        stage(Stage::FwdBlock, nb, nb, 1);
        stage(Stage::Spectral, pc.m / 2 + 1, parts, 1);
        stage(Stage::InvBlock, nb, nb, 1);
      }
      stage(Stage::InvTop, nbf, parts, 8);
      stage(Stage::Store, pc.n / 2, parts, 8);
    }
    return;
  }
  ThreadWorkspaces ws(impl.workspaces, kernels::fft::workspace_floats(pc) * sizeof(float));
  parallel_for(tasks, [&](int64_t task, int th) {
    int64_t pattern;
    const kernels::fft::RowPtrs io = rows_of(task, &pattern);
    (corr ? impl.fp32.corr : impl.fp32.conv)(pc, pattern, io, static_cast<float*>(ws.get(th)));
  });
}

void run_dk(const FftConvPlan::Impl& impl, const float* dy, const float* v, const float* u, const float* w, int64_t b, float* dk) {
  const auto& pc = impl.core;
  const int64_t L = pc.lanes, groups = (pc.h + L - 1) / L;
  ThreadWorkspaces ws(impl.workspaces, kernels::fft::dk_workspace_floats(pc) * sizeof(float));
  parallel_for(groups, [&](int64_t g, int th) {
    const int rows = int(std::min<int64_t>(L, pc.h - g * L));
    impl.fp32.dk(pc, g * L, rows, b, dy, v, u, w, impl.nk, dk, static_cast<float*>(ws.get(th)));
  });
}

}  // namespace

void FftConvPlan::conv(const float* u, int64_t b, float* y) const { run(*impl_, u, nullptr, nullptr, b, y); }

void FftConvPlan::conv_gated(const float* u, const float* v, const float* w, int64_t b, float* y) const {
  require(v != nullptr && w != nullptr, "fftconv: gated convolution needs both gates");
  run(*impl_, u, v, w, b, y);
}

void FftConvPlan::backward(const float* u, const float* dy, int64_t b, float* du, float* dk) const {
  require(u != nullptr && dy != nullptr && dk != nullptr, "fftconv backward: null buffer");
  if (du != nullptr) run(*impl_, dy, nullptr, nullptr, b, du, /*corr=*/true);
  run_dk(*impl_, dy, nullptr, u, nullptr, b, dk);
}

void FftConvPlan::backward_gated(const float* u, const float* v, const float* w, const float* dy, int64_t b, float* du,
                                 float* dv, float* dw, float* dk) const {
  require(u && v && w && dy && du && dv && dw && dk, "fftconv backward_gated: null buffer");
  const size_t count = size_t(b * impl_->core.h * impl_->core.n);
  run(*impl_, dy, nullptr, v, b, du, /*corr=*/true);  // g = corr(dy ⊙ v, k): the gradient of u ⊙ w
  parallel_for(int64_t((count + 65535) / 65536), [&](int64_t c, int) {
    for (size_t i = size_t(c) * 65536; i < std::min(count, size_t(c + 1) * 65536); ++i) {
      dw[i] = du[i] * u[i];
      du[i] = du[i] * w[i];
    }
  });
  run(*impl_, u, dy, w, b, dv);                        // dv = dy ⊙ conv(u ⊙ w, k)
  run_dk(*impl_, dy, v, u, w, b, dk);                  // dk = Σ_b corr(dy ⊙ v, u ⊙ w)
}

int64_t FftConvPlan::filter_length() const { return impl_->nk; }

void FftConvPlan::conv_bf16(const uint16_t* u, int64_t b, float* y) const {
  const Impl& impl = *impl_;
  require(b >= 0, "fftconv: negative batch");
  require(b == 0 || (u != nullptr && y != nullptr), "fftconv: null input or output");
  if (impl.direct) {
    const auto& dp = *impl.direct;
    const int64_t rows = b * dp.h;
    ThreadWorkspaces ws(impl.workspaces, kernels::fft::direct_workspace_bytes(dp));
    // Several rows per task (consecutive rows of one channel reuse the filter windows), at least
    // 4 tasks per thread.
    const int64_t per = std::max<int64_t>(1, rows / (4 * num_threads()));
    parallel_for((rows + per - 1) / per, [&](int64_t task, int th) {
      impl.direct_fn(dp, task * per, std::min(rows, (task + 1) * per), u, y, ws.get(th));
    });
    return;
  }
  if (!impl.monarch) return run(impl, nullptr, nullptr, nullptr, b, y, false, u);  // converted inside the row loads
  const auto& mp = *impl.monarch;
  const int64_t rows = b * mp.h;
  ThreadWorkspaces ws(impl.workspaces, kernels::fft::monarch_workspace_bytes(mp));
  const bool stream = stream_output(y, mp.n, rows);
  // Tasks of several short rows, so the per-call tile setup is amortized; at least 2 per thread.
  const int64_t per = std::clamp<int64_t>((int64_t(1) << 16) / mp.m, 1, std::max<int64_t>(1, rows / (2 * num_threads())));
  parallel_for((rows + per - 1) / per, [&](int64_t task, int th) {
    impl.monarch_fn(mp, task * per, std::min(rows, (task + 1) * per), u, y, ws.get(th), stream);
  });
}

const char* FftConvPlan::kernel_bf16() const { return impl_->kernel_bf16; }

}  // namespace tz
