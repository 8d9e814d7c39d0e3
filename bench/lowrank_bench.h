// `tensorzip bench lowrank`: randomized vs full SVD, the low-rank operator vs the dense GEMM, and
// the fused multi-adapter kernel vs the loop over adapters — each ratio measured in the same run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct LowRankBenchOptions {
  std::vector<std::string> parts = {"rsvd", "op", "adapters"};
  int64_t m = 4096, k = 4096;          // matrix / layer shape (out x in)
  int64_t svd_rank = 64, oversample = 10;
  int power_iters = 4;
  int64_t op_rank = 256;
  std::vector<int64_t> n = {1, 16, 64, 256};
  int64_t adapters = 32, adapter_rank = 16, rows = 64;
  std::vector<int> threads;
  int warmup = 1, repeats = 10;
  double budget_s = 2.0;
};

int lowrank_bench_cases(const LowRankBenchOptions& o);
void bench_lowrank(const LowRankBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);

}  // namespace tz::bench
