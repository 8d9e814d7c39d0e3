// `tensorzip bench ggml`: the GEMM on llama.cpp's weight blocks (ggml_gemm) per GGUF type against
// the dense f32 GEMM on the same dequantized weights (OpenBLAS), same run; --cold streams the
// blocks from DRAM and adds roofline_frac for n <= 8 (decode is meant to be bandwidth-bound).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct GgmlBenchOptions {
  int64_t m = 4096, k = 4096;
  std::vector<int64_t> n = {1, 64};
  std::vector<std::string> types = {"q4_0", "q8_0", "q4_K", "q5_K", "q6_K", "iq4_xs", "q2_K"};
  std::vector<int> threads;
  int warmup = 1, repeats = 10;
  double budget_s = 1.0;
  bool cold = false;
};

int ggml_bench_cases(const GgmlBenchOptions& o);
void bench_ggml(const GgmlBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);

}  // namespace tz::bench
