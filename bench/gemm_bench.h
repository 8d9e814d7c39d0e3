// `tensorzip bench gemm`: the dense baseline (OpenBLAS f32, our bf16 kernels) against the scalar
// reference, per dtype x n x threads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct GemmBenchOptions {
  int64_t m = 4096, k = 4096;
  std::vector<int64_t> n = {1, 64, 512};
  std::vector<std::string> dtypes = {"f32", "bf16"};
  std::vector<int> threads;     // empty: the current thread count
  int warmup = 1, repeats = 10;
  double budget_s = 2.0;        // per implementation and case
  bool cold = false;
  bool with_ref = true;         // time the scalar reference (slow at large shapes)
};

// Number of cases (for progress bars).
int gemm_bench_cases(const GemmBenchOptions& o);
void bench_gemm(const GemmBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);

}  // namespace tz::bench
