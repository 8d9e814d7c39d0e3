// `tensorzip bench fftconv`: the fused FFT convolution against FFTW (GPL; linked into the CLI
// only, for this baseline) doing the same causal convolution with the same threads.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct FftConvBenchOptions {
  std::vector<int64_t> b = {1, 8};
  int64_t h = 768;
  std::vector<int64_t> n = {1024, 4096, 16384, 65536};
  std::vector<std::string> dtypes = {"f32"};
  std::vector<int> threads;
  int warmup = 1, repeats = 10;
  double budget_s = 1.5;
  int64_t max_elements = int64_t(1) << 24;  // per case: H shrinks so B·H·N stays below this
};

int fftconv_bench_cases(const FftConvBenchOptions& o);
void bench_fftconv(const FftConvBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);
// "4K" -> 4096, "1M" -> 1048576, "512" -> 512.
int64_t parse_size(const std::string& s);

}  // namespace tz::bench
