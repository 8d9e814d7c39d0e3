// DRAM read bandwidth: the roofline memory-bound benchmarks report their fraction of.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace tz::bench {

struct MembwResult { double gbps_best = 0, gbps_median = 0; };
// Reads a `bytes` buffer with `threads` threads (each its own contiguous part), best of several passes.
MembwResult measure_membw(int threads, size_t bytes = size_t(1) << 30, int passes = 5);
// The roofline of a GEMM benchmark: when it streams cold weights and some n is memory-bound
// (n <= 8 tokens), the bandwidth per thread count, measured once at its start; else empty.
std::map<int, MembwResult> gemm_rooflines(bool cold, const std::vector<int64_t>& ns, const std::vector<int>& threads);
// Sum of the floats in [p, p+n): the read loop (AVX2 when the CPU has it).
float read_sum_avx2(const float* p, size_t n);

}  // namespace tz::bench
