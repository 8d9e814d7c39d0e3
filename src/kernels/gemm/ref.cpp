// Scalar GEMM references: plain loops with double accumulation — the oracle for every path.
#include <algorithm>
#include <vector>

#include "kernels/gemm/gemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {

void gemm_f32_f32_f32__ref(const GemmF32Args& a) {
  // Y (n,m) = X (n,k) @ W (m,k)^T
  for (int64_t i = 0; i < a.n; ++i)
    for (int64_t j = 0; j < a.m; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < a.k; ++p) acc += double(a.x[i * a.ldx + p]) * double(a.w[j * a.ldw + p]);
      a.y[i * a.ldy + j] = float(acc);
    }
}

void gemm_bf16_bf16_f32__ref(const GemmBf16Args& a) {
  // bf16 -> f32 is exact, so widen both operands and reuse the f32 reference.
  std::vector<float> x(static_cast<size_t>(a.n * a.k)), w(size_t(a.m * a.k));
  for (int64_t i = 0; i < a.n; ++i)
    for (int64_t p = 0; p < a.k; ++p) x[size_t(i * a.k + p)] = bf16_to_f32_scalar(a.x[i * a.ldx + p]);
  for (int64_t j = 0; j < a.m; ++j)
    for (int64_t p = 0; p < a.k; ++p) w[size_t(j * a.k + p)] = bf16_to_f32_scalar(a.w[j * a.ldw + p]);
  gemm_f32_f32_f32__ref({a.n, a.m, a.k, x.data(), a.k, w.data(), a.k, a.y, a.ldy});
}

void gemm_parallel_m(int64_t m, int64_t align, int64_t n, int64_t k,
                     const std::function<void(int64_t, int64_t)>& tile) {
  // Enough chunks for dynamic balancing, but each worth well over the wake-up cost.
  const int64_t work = n * m * k;
  const int threads = num_threads();
  int64_t chunks = threads == 1 || work < (1 << 18) ? 1 : int64_t(threads) * 4;
  chunks = std::max<int64_t>(1, std::min(chunks, (m + align - 1) / align));
  parallel_for(chunks, [&](int64_t c, int) {
    const Range r = split_range(m, chunks, c, align);
    if (r.begin < r.end) tile(r.begin, r.end);
  });
}

}  // namespace tz::kernels
