// Links against the installed tensorzip and runs one GEMM against the reference.
#include <cmath>
#include <cstdio>
#include <vector>

#include "tensorzip/cpu.h"
#include "tensorzip/gemm.h"

int main() {
  const int64_t n = 3, m = 5, k = 7;
  std::vector<float> x(n * k), w(m * k), y(n * m), ref(n * m);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 5) - 2.f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 3) - 1.f;
  tz::gemm_f32(n, m, k, x.data(), k, w.data(), k, y.data(), m);
  tz::gemm_f32_ref(n, m, k, x.data(), k, w.data(), k, ref.data(), m);
  for (size_t i = 0; i < y.size(); ++i)
    if (y[i] != ref[i]) {
      std::printf("consumer: mismatch at %zu\n", i);
      return 1;
    }
  std::printf("consumer: find_package(tensorzip) works, isa %s\n", tz::isa_name(tz::cpu_info().active_isa));
  return 0;
}
