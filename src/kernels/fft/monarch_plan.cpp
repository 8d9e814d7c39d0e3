// Tables of the bf16 Monarch FFT convolution (monarch.h): twiddles per stage, the pairing of
// mirrored 256-blocks, the DFT-16 tiles and the filter spectra in transform order.
#include <cmath>
#include <complex>
#include <cstring>

#include "kernels/fft/monarch.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"

namespace tz::kernels::fft {

int64_t monarch_bin_of_position(int64_t m, int r, int64_t pos) {
  int64_t k = 0, mult = 1, span = m;
  if (r > 1) {
    span = m / r;
    k += pos / span;
    pos %= span;
    mult = r;
  }
  while (span > 1) {
    span /= 16;
    k += (pos / span) * mult;
    pos %= span;
    mult *= 16;
  }
  return k;
}

namespace {

constexpr double kDftScale = 1.1328025;

TwiddleTable twiddles(int64_t L, int radix) {
  TwiddleTable t;
  t.L = L;
  t.radix = radix;
  t.re.resize(size_t(L));
  t.im.resize(size_t(L));
  const int64_t q = L / radix;
  for (int64_t a = 0; a < radix; ++a)
    for (int64_t p = 0; p < q; ++p) {
      const double ang = -2.0 * M_PI * double((a * p) % L) / double(L);
      t.re[size_t(a * q + p)] = float(std::cos(ang));
      t.im[size_t(a * q + p)] = float(std::sin(ang));
    }
  return t;
}

}  // namespace

MonarchPlan make_monarch_plan(int64_t n, int64_t m, int64_t h, const std::vector<std::vector<std::complex<double>>>& spectra,
                              const uint8_t* skip, int64_t skip_block) {
  require(monarch_supported(m), "fftconv: the Monarch path needs m >= 256");
  MonarchPlan mp;
  mp.n = n;
  mp.m = m;
  mp.h = h;
  int e = 0;
  while ((int64_t(1) << e) < m) ++e;
  mp.r = 1 << (e % 4);
  if (mp.r > 1) mp.stage.push_back(twiddles(m, mp.r));
  for (int t = 0; t < mp.r; ++t) {
    mp.top_c[t] = float(std::cos(-2.0 * M_PI * t / mp.r));
    mp.top_s[t] = float(std::sin(-2.0 * M_PI * t / mp.r));
  }
  for (int64_t L = m / mp.r; L >= 256; L /= 16) mp.stage.push_back(twiddles(L, 16));

  // Bins of positions, and the inverse map.
  std::vector<int32_t> pos_of(static_cast<size_t>(m)), bin_of(static_cast<size_t>(m));
  for (int64_t p = 0; p < m; ++p) {
    bin_of[size_t(p)] = int32_t(monarch_bin_of_position(m, mp.r, p));
    pos_of[size_t(bin_of[size_t(p)])] = int32_t(p);
  }
  const int64_t nb = m / 256, kspan = m / 256;
  mp.partner.resize(size_t(nb));
  for (int64_t g = 0; g < nb; ++g) {
    const int64_t kb = bin_of[size_t(256 * g)];  // < m/256
    mp.partner[size_t(g)] = pos_of[size_t((kspan - kb) % kspan)] / 256;
  }
  mp.part0.resize(256);
  for (int64_t p = 0; p < 256; ++p) mp.part0[size_t(p)] = pos_of[size_t((m - bin_of[size_t(p)]) % m)];
  // DFT-16 as tiles: row k1, column pair n1: re output (cos, sin), im output (−sin, cos) of
  // θ = 2π n1 k1 / 16; symmetric in (k1, n1), so the same bytes serve as the A or the B operand.
  // Scaled by kDftScale, where the four magnitudes {1, cos π/8, cos π/4, sin π/8} all land within
  // 2.9e-4 of a bf16 value (unscaled, cos π/8 is 2.1e-3 off); the scale of the 2s radix-16 stages
  // is divided out of the spectral tables below.
  for (int k1 = 0; k1 < 16; ++k1)
    for (int n1 = 0; n1 < 16; ++n1) {
      const double th = 2.0 * M_PI * double((n1 * k1) % 16) / 16.0;
      const double re[2] = {std::cos(th), std::sin(th)}, im[2] = {-std::sin(th), std::cos(th)};
      for (int c = 0; c < 2; ++c) {
        const int at = 32 * k1 + 2 * n1 + c;
        mp.dft[0][at] = f32_to_bf16_scalar(float(kDftScale * re[c]));
        mp.dft[1][at] = f32_to_bf16_scalar(float(kDftScale * im[c]));
      }
    }
  const int64_t radix16_stages = int64_t(mp.stage.size()) - (mp.r > 1 ? 1 : 0) + 1;
  const double unscale = std::pow(kDftScale, -2.0 * double(radix16_stages));
  // The closed-form spectral step's tables (monarch.h).
  mp.kside_row.assign(size_t(nb), -1);
  for (int64_t g = 1; g < nb; ++g) {
    const int64_t g2 = mp.partner[size_t(g)];
    if (g2 < g) continue;
    mp.kside_row[size_t(g)] = int32_t(mp.kside_rows);
    mp.kside_rows += g2 == g ? 8 : 16;
  }
  const double inv_m = unscale / double(m);
  const auto off = [&](int64_t k) { return skip != nullptr && skip[k / skip_block] != 0; };
  mp.sc.assign(size_t(mp.kside_rows) * 32, 0.f);
  mp.sd.assign(size_t(h) * size_t(mp.kside_rows) * 64, 0);
  mp.uv0.assign(size_t(h) * 1024, 0.f);
  for (int64_t g = 1; g < nb; ++g) {
    if (mp.kside_row[size_t(g)] < 0) continue;
    const int rows = mp.partner[size_t(g)] == g ? 8 : 16;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < 16; ++j) {
        const double th = M_PI * double(bin_of[size_t(256 * g + 16 * i + j)]) / double(m);
        float* row = mp.sc.data() + size_t(mp.kside_row[size_t(g)] + i) * 32;
        row[j] = float(std::sin(th));
        row[16 + j] = float(std::cos(th));
      }
  }
  for (int64_t c = 0; c < h; ++c) {
    const auto& spec = spectra[size_t(c)];
    const auto K = [&](int64_t k) { return off(k) ? std::complex<double>() : spec[size_t(k)] * inv_m; };
    const auto SD = [&](int64_t k, std::complex<double>* S, std::complex<double>* D) {
      const std::complex<double> P = K(k), Q = std::conj(K(k == 0 ? m : m - k));
      *S = (P + Q) * 0.5;
      *D = (P - Q) * 0.5;
    };
    std::complex<double> S, D;
    uint16_t* sd = mp.sd.data() + size_t(c) * size_t(mp.kside_rows) * 64;
    for (int64_t g = 1; g < nb; ++g) {
      if (mp.kside_row[size_t(g)] < 0) continue;
      const int rows = mp.partner[size_t(g)] == g ? 8 : 16;
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < 16; ++j) {
          SD(bin_of[size_t(256 * g + 16 * i + j)], &S, &D);
          uint16_t* row = sd + size_t(mp.kside_row[size_t(g)] + i) * 64 + j;
          row[0] = f32_to_bf16_scalar(float(S.real()));
          row[16] = f32_to_bf16_scalar(float(S.imag()));
          row[32] = f32_to_bf16_scalar(float(D.real()));
          row[48] = f32_to_bf16_scalar(float(D.imag()));
        }
    }
    float* uv0 = mp.uv0.data() + size_t(c) * 1024;
    for (int64_t p = 0; p < 256; ++p) {
      const int64_t k = bin_of[size_t(p)];
      SD(k, &S, &D);
      const double th = M_PI * double(k) / double(m);
      const std::complex<double> U = S - std::sin(th) * D, V = std::complex<double>(0, std::cos(th)) * D;
      float* row = uv0 + (p / 16) * 64 + p % 16;
      row[0] = float(U.real());
      row[16] = float(U.imag());
      row[32] = float(V.real());
      row[48] = float(V.imag());
    }
  }
  return mp;
}

}  // namespace tz::kernels::fft
