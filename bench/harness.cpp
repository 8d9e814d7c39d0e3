// Timing, error metric and result printing for the benchmarks.
#include "bench/harness.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "core/json.h"

namespace tz::bench {

Timing time_it(const std::function<void(int)>& fn, int warmup, int repeats, double budget_s, int min_reps) {
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<double> ms;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(warmup + i);
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    const double spent = std::chrono::duration<double>(t1 - start).count();
    if (int(ms.size()) >= min_reps && spent > budget_s) break;
  }
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.reps = int(ms.size());
  t.ms_min = ms.front();
  t.ms_median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  return t;
}

double max_rel_err(const float* y, const float* ref, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; ++i) {
    scale = std::max(scale, std::fabs(double(ref[i])));
    const double d = std::fabs(double(y[i]) - double(ref[i]));
    err = std::max(err, std::isnan(d) ? INFINITY : d);
  }
  return scale > 0 ? err / scale : err;
}

std::vector<float> gaussian(size_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

int copies_for(size_t bytes_per_copy, bool cold, size_t min_bytes) {
  if (!cold || bytes_per_copy == 0) return 1;
  return int(std::max<size_t>(2, (min_bytes + bytes_per_copy - 1) / bytes_per_copy));
}

void Reporter::add(const Row& r) {
  const double s = r.t.ms_median / 1e3;
  const double gflops = r.flops > 0 ? r.flops / s / 1e9 : 0;
  const double gbps = r.bytes > 0 ? r.bytes / s / 1e9 : 0;
  const double ratio = r.baseline_ms > 0 ? r.baseline_ms / r.t.ms_median : 1.0;
  std::optional<double> roof;
  if (r.roofline_gbps && *r.roofline_gbps > 0 && gbps > 0) roof = gbps / *r.roofline_gbps;
  if (json_) {
    nlohmann::ordered_json j;
    j["op"] = r.op;
    j["impl"] = r.impl;
    j["baseline"] = r.baseline;
    j["dtype"] = r.dtype;
    j["shape"] = r.shape;
    j["threads"] = r.threads;
    j["cache"] = r.cache;
    j["reps"] = r.t.reps;
    j["ms_min"] = r.t.ms_min;
    j["ms_median"] = r.t.ms_median;
    j["gflops"] = gflops;
    j["gbps"] = gbps;
    j["ratio_to_baseline"] = ratio;
    j["max_rel_err"] = r.max_rel_err;
    j["roofline_frac"] = roof ? nlohmann::ordered_json(*roof) : nlohmann::ordered_json(nullptr);
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) j[it.key()] = it.value();
    fmt::print("{}\n", tz::json_io::dump(j));
  } else {
    if (!header_done_) {
      fmt::print("{:<7} {:<48} {:<24} {:<22} {:>3} {:<4} {:>10} {:>10} {:>9} {:>8} {:>9} {:<26} {:>9} {:>6}\n", "op", "impl",
                 "dtype", "shape", "thr", "cache", "ms_min", "ms_median", "GFLOP/s", "GB/s", "ratio", "baseline",
                 "max_err", "roof");
      header_done_ = true;
    }
    fmt::print("{:<7} {:<48} {:<24} {:<22} {:>3} {:<4} {:>10.4f} {:>10.4f} {:>9.1f} {:>8.2f} {:>8.2f}x {:<26} {:>9.2e} {:>6}\n", r.op,
               r.impl, r.dtype, r.shape, r.threads, r.cache, r.t.ms_min, r.t.ms_median, gflops, gbps, ratio,
               r.baseline.empty() ? "-" : r.baseline, r.max_rel_err, roof ? fmt::format("{:.0f}%", *roof * 100) : "-");
  }
  std::fflush(stdout);
}

GemmCase gemm_case(const std::string& op, const std::string& dtype, int64_t m, int64_t k, int64_t n, bool cold, int warmup,
                   int repeats, double budget_s, const std::vector<float>& y, const std::vector<float>& ref) {
  GemmCase c;
  c.op = op, c.dtype = dtype, c.shape = fmt::format("m={} k={} n={}", m, k, n);
  c.cold = cold;
  c.flops = 2.0 * double(n) * double(m) * double(k);
  c.act_bytes = double(n * k) * 4 + double(n * m) * 4;
  c.warmup = warmup, c.repeats = repeats, c.budget_s = budget_s;
  c.y = &y, c.ref = &ref;
  return c;
}

Row time_gemm_case(const GemmCase& c, const std::string& impl, const std::string& baseline, double baseline_ms,
                   double weight_bytes, int copies, const std::function<void(int)>& fn) {
  fn(0);
  const double err = max_rel_err(c.y->data(), c.ref->data(), c.y->size());
  const Timing tt = time_it(fn, c.cold ? std::max(c.warmup, copies) : c.warmup, c.repeats, c.budget_s);
  Row r{c.op, impl, baseline, c.dtype, c.shape, c.cold ? "cold" : "hot", c.threads, tt, c.flops, weight_bytes + c.act_bytes,
        baseline_ms, err, c.roofline_gbps, {}};
  r.extra["copies"] = copies;
  r.extra["weight_bytes"] = weight_bytes;
  return r;
}

}  // namespace tz::bench
