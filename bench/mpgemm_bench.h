// `tensorzip bench mpgemm`: the LUT kernel against the dequantize-then-FMA baseline and the dense
// f32 GEMM (OpenBLAS on the dequantized weights), same format, same run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct MpGemmBenchOptions {
  int64_t m = 4096, k = 4096;
  std::vector<int64_t> n = {1, 8, 32, 256};
  std::vector<std::string> bits = {"1", "2", "3", "4", "t"};  // 1..8, or t = ternary (per-row scale)
  int group = 128;
  std::vector<int> threads;
  int warmup = 1, repeats = 10;
  double budget_s = 1.0;
  bool cold = false;
  bool exact = false;  // also time the exact (f32-table) mode
};

int mpgemm_bench_cases(const MpGemmBenchOptions& o);
void bench_mpgemm(const MpGemmBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);

}  // namespace tz::bench
