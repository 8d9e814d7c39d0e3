// DRAM read-bandwidth probe on the library's thread pool.
#include "bench/membw.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "bench/harness.h"
#include "tensorzip/cpu.h"
#include "tensorzip/runtime.h"
#include "tensorzip/tensor.h"

namespace tz::bench {

MembwResult measure_membw(int threads, size_t bytes, int passes) {
  const size_t n = bytes / sizeof(float) / 64 * 64;
  auto buf = aligned_alloc_shared(n * sizeof(float));
  float* p = static_cast<float*>(buf.get());
  // First touch from the threads that will read it (page placement), then time the reads.
  set_num_threads(threads);
  parallel_for(threads, [&](int64_t t, int) {
    const Range r = split_range(int64_t(n), threads, t, 64);
    std::memset(p + r.begin, 0, size_t(r.end - r.begin) * sizeof(float));
  });
  const bool avx2 = cpu_info().has(kAvx2);
  std::vector<float> sink(static_cast<size_t>(threads));
  const Timing t = time_it([&](int) {
    parallel_for(threads, [&](int64_t task, int) {
      const Range r = split_range(int64_t(n), threads, task, 64);
      float s = 0;
      if (avx2) s = read_sum_avx2(p + r.begin, size_t(r.end - r.begin));
      else for (int64_t i = r.begin; i < r.end; ++i) s += p[i];
      sink[size_t(task)] = s;
    });
  }, 1, passes, 10.0, passes);
  const double gb = double(n * sizeof(float)) / 1e9;
  return {gb / (t.ms_min / 1e3), gb / (t.ms_median / 1e3)};
}

std::map<int, MembwResult> gemm_rooflines(bool cold, const std::vector<int64_t>& ns, const std::vector<int>& threads) {
  std::map<int, MembwResult> bw;
  bool any_mem_bound = false;
  for (int64_t n : ns) any_mem_bound |= n <= 8;
  if (cold && any_mem_bound)
    for (int t : threads) bw[t] = measure_membw(t);
  return bw;
}

}  // namespace tz::bench
