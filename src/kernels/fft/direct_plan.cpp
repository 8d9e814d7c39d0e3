// The direct AMX convolution's plan: the filters as bf16 pairs (see direct.h), and its cost.
#include <algorithm>

#include "kernels/fft/direct.h"
#include "tensorzip/convert.h"

namespace tz::kernels::fft {

bool direct_supported(int64_t n) { return n >= 512 && n % 512 == 0; }

namespace {
// Slice d spans filter taps 32d − 31 .. 32d + 31; circular d = 0 also wraps to taps n − 31 ..
// n − 1, which only a filter longer than n − 31 reaches (then every slice is non-zero anyway).
int64_t slices(int64_t n, int64_t nk) { return std::min(n / 32, (nk + 30) / 32 + 1); }
}  // namespace

DirectPlan make_direct_plan(int64_t n, int64_t h, const float* k, int64_t nk, bool causal) {
  DirectPlan dp;
  dp.n = n;
  dp.h = h;
  dp.nk = nk;
  dp.causal = causal;
  dp.J = n / 32;
  dp.D = slices(n, nk);
  dp.pair_stride = DirectPlan::kPairFront + n + DirectPlan::kPairBack;
  dp.pairs.assign(size_t(h * dp.pair_stride), 0);
  std::vector<uint16_t> kb(static_cast<size_t>(n));
  for (int64_t c = 0; c < h; ++c) {
    std::fill(kb.begin(), kb.end(), uint16_t(0));
    f32_to_bf16(k + c * nk, kb.data(), size_t(nk));
    const auto tap = [&](int64_t m) -> uint32_t {
      if (causal) return m >= 0 && m < n ? kb[size_t(m)] : 0;
      return kb[size_t(((m % n) + n) % n)];
    };
    uint32_t* p = dp.pairs.data() + size_t(c * dp.pair_stride);
    for (int64_t m = -DirectPlan::kPairFront; m < n + DirectPlan::kPairBack; ++m)
      p[m + DirectPlan::kPairFront] = tap(m) | (tap(m - 1) << 16);
  }
  return dp;
}

int64_t direct_tile_products(int64_t n, int64_t nk, bool causal) {
  const int64_t D = slices(n, nk);
  int64_t t = 0;
  for (int64_t jh = 0; jh < n / 512; ++jh) t += 2 * (causal ? std::min(D, 16 * jh + 16) : D);
  return t;
}

// The row buffer (causal: 16 zero blocks, then the row; circular: the row twice) and W.
size_t direct_workspace_bytes(const DirectPlan& dp) {
  return size_t(2 * dp.n + 512) * 2 + size_t(16 * dp.D + 40) * 64;
}

}  // namespace tz::kernels::fft
