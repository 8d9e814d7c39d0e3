// The direct AMX convolution's plan: the filters as bf16 pairs (see direct.h), and its cost.
#include <algorithm>

#include "kernels/fft/direct.h"
#include "tensorzip/convert.h"

namespace tz::kernels::fft {

bool direct_supported(int64_t n) { return n >= 512 && n % 512 == 0; }

DirectPlan make_direct_plan(int64_t n, int64_t h, const float* k, int64_t nk, bool causal) {
  DirectPlan dp;
  dp.n = n;
  dp.h = h;
  dp.nk = nk;
  dp.causal = causal;
  dp.J = n / 32;
  // Slice d spans filter taps 32d − 31 .. 32d + 31; circular d = 0 also wraps to taps n − 31 ..
  // n − 1, which only a filter longer than n − 31 reaches (then every slice is non-zero anyway).
  dp.D = std::min(dp.J, (nk + 30) / 32 + 1);
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

int64_t direct_tile_products(const DirectPlan& dp) {
  int64_t t = 0;
  for (int64_t jh = 0; jh < dp.J / 16; ++jh) t += 2 * (dp.causal ? std::min(dp.D, 16 * jh + 16) : dp.D);
  return t;
}

// The row buffer (causal: 16 zero blocks, then the row; circular: the row twice) and W.
size_t direct_workspace_bytes(const DirectPlan& dp) {
  return size_t(2 * dp.n + 512) * 2 + size_t(16 * dp.D + 40) * 64;
}

}  // namespace tz::kernels::fft
