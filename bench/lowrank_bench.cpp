// See lowrank_bench.h.
#include "bench/lowrank_bench.h"

#include <fmt/core.h>

#include <chrono>
#include <cmath>

#include "tensorzip/decompose.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/runtime.h"

namespace tz::bench {
namespace {

bool has(const LowRankBenchOptions& o, const char* part) {
  for (const auto& p : o.parts)
    if (p == part) return true;
  return false;
}

// m x n with a decaying spectrum: G1 · diag(σ) · G2, G1 (m x K), G2 (K x n) Gaussian / sqrt,
// σ_i = 1 / (1 + i), K = min(m, n) / 4 — nearly orthogonal columns, so the spectrum is close to σ.
std::vector<float> decaying(int64_t m, int64_t n) {
  const int64_t kk = std::max<int64_t>(1, std::min(m, n) / 4);
  auto g1 = gaussian(size_t(m * kk), 101, float(1 / std::sqrt(double(m))));
  const auto g2 = gaussian(size_t(kk * n), 102, float(1 / std::sqrt(double(n))));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < kk; ++j) g1[size_t(i * kk + j)] /= float(1 + j);
  // A = G1 · G2 = G1 · (G2ᵀ)ᵀ: transpose G2 for the NT GEMM.
  std::vector<float> g2t(size_t(n * kk)), a(size_t(m * n));
  for (int64_t j = 0; j < kk; ++j)
    for (int64_t c = 0; c < n; ++c) g2t[size_t(c * kk + j)] = g2[size_t(j * n + c)];
  gemm_f32(m, n, kk, g1.data(), kk, g2t.data(), kk, a.data(), n);
  return a;
}

}  // namespace

int lowrank_bench_cases(const LowRankBenchOptions& o) {
  const int t = int(std::max<size_t>(1, o.threads.size()));
  return t * ((has(o, "rsvd") ? 1 : 0) + (has(o, "op") ? int(o.n.size()) : 0) + (has(o, "adapters") ? 1 : 0));
}

void bench_lowrank(const LowRankBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  for (const auto& p : o.parts)
    require(p == "rsvd" || p == "op" || p == "adapters", "bench lowrank: --parts takes rsvd, op, adapters; got '" + p + "'");
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  const int64_t m = o.m, k = o.k;
  for (int t : threads) {
    set_num_threads(t);
    if (has(o, "rsvd")) {
      progress(fmt::format("rsvd {}x{} rank {} threads={}", m, k, o.svd_rank, t));
      const auto a = decaying(m, k);
      // The full SVD once (it takes seconds), then the randomized one with repeats.
      const auto t0 = std::chrono::steady_clock::now();
      const auto full = svd_truncated(a.data(), m, k, RankSpec::of_rank(o.svd_rank));
      const double full_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      Row rf{"svd", "lapack_sgesdd_full", "", "f32", fmt::format("{}x{} r={}", m, k, o.svd_rank), "hot", t,
             {full_ms, full_ms, 1}, 0, double(m * k) * 4, 0, full.report.rel_error, std::nullopt, {}};
      rf.extra["rel_error"] = full.report.rel_error;
      rep.add(rf);
      for (bool bf16 : {false, true}) {
        RandomizedSvdOptions ro;
        ro.oversample = o.oversample;
        ro.power_iters = o.power_iters;
        ro.report_error = false;  // measured once below, outside the timed runs
        ro.bf16_range = bf16;
        Svd<float> rs;
        const Timing tr = time_it([&](int) { rs = svd_randomized(a.data(), m, k, RankSpec::of_rank(o.svd_rank), ro); },
                                  o.warmup, o.repeats, o.budget_s);
        rs.report.rel_error = relative_error(a.data(), rs.reconstruct().data(), a.size());
        Row rr{"svd", fmt::format("randomized_p{}_q{}{}", o.oversample, o.power_iters, bf16 ? "_bf16range" : ""),
               "lapack_sgesdd_full", "f32", rf.shape, "hot", t, tr, 0, double(m * k) * 4, full_ms, rs.report.rel_error,
               std::nullopt, {}};
        rr.extra["rel_error"] = rs.report.rel_error;
        rr.extra["optimal_rel_error"] = full.report.rel_error;
        rr.extra["error_excess"] = rs.report.rel_error / full.report.rel_error - 1;
        rep.add(rr);
      }
    }
    if (has(o, "op")) {
      const auto w = gaussian(size_t(m * k), 201, 0.02f);
      const auto svd = svd_randomized(w.data(), m, k, RankSpec::of_rank(o.op_rank));
      const auto op = LowRankLinear::from_svd(svd);
      const auto dense = op.dense();  // the reconstruction: the dense layer computing the same map
      for (int64_t n : o.n) {
        progress(fmt::format("lowrank op n={} threads={}", n, t));
        const auto x = gaussian(size_t(n * k), 202);
        std::vector<float> yd(size_t(n * m)), yl(size_t(n * m));
        const Timing td = time_it([&](int) { gemm_f32(n, m, k, x.data(), k, dense.data(), k, yd.data(), m); }, o.warmup,
                                  o.repeats, o.budget_s);
        const Timing tl = time_it([&](int) { op.apply(x.data(), n, yl.data()); }, o.warmup, o.repeats, o.budget_s);
        const std::string shape = fmt::format("{}x{} r={} n={}", m, k, o.op_rank, n);
        const double fd = 2.0 * double(n) * double(m) * double(k), fl = op.flops(n);
        rep.add(Row{"lowrank_op", "dense_gemm_f32", "", "f32", shape, "hot", t, td, fd, double(m * k) * 4, 0, 0,
                    std::nullopt, {}});
        Row r{"lowrank_op", "lowrank_two_gemms", "dense_gemm_f32", "f32", shape, "hot", t, tl, fl,
              double(o.op_rank * (m + k)) * 4, td.ms_median, max_rel_err(yl.data(), yd.data(), yl.size()), std::nullopt, {}};
        r.extra["flops_ratio"] = fd / fl;
        r.extra["time_ratio_over_flops_ratio"] = (td.ms_median / tl.ms_median) / (fd / fl);
        rep.add(r);
      }
    }
    if (has(o, "adapters")) {
      progress(fmt::format("adapters {} x rank {} rows {} threads={}", o.adapters, o.adapter_rank, o.rows, t));
      for (DType storage : {DType::F32, DType::BF16}) {
        AdapterBank bank(m, k, storage);
        for (int64_t i = 0; i < o.adapters; ++i)
          bank.add(LoraAdapter{o.adapter_rank, float(2 * o.adapter_rank),
                               gaussian(size_t(o.adapter_rank * k), uint32_t(300 + i), 0.02f),
                               gaussian(size_t(m * o.adapter_rank), uint32_t(400 + i), 0.02f), false, {}});
        std::vector<int32_t> ids(static_cast<size_t>(o.rows));
        for (int64_t r = 0; r < o.rows; ++r) ids[size_t(r)] = int32_t((r * 7) % o.adapters);  // mixed order
        const auto x = gaussian(size_t(o.rows * k), 500);
        std::vector<float> yf(size_t(o.rows * m), 0.f), yl(size_t(o.rows * m), 0.f);
        const Timing tl = time_it([&](int) { bank.apply_loop(x.data(), o.rows, ids.data(), yl.data()); }, o.warmup,
                                  o.repeats, o.budget_s);
        const Timing tf = time_it([&](int) { bank.apply(x.data(), o.rows, ids.data(), yf.data()); }, o.warmup,
                                  o.repeats, o.budget_s);
        std::fill(yf.begin(), yf.end(), 0.f);
        std::fill(yl.begin(), yl.end(), 0.f);
        bank.apply(x.data(), o.rows, ids.data(), yf.data());
        bank.apply_loop(x.data(), o.rows, ids.data(), yl.data());
        const bool bf = storage == DType::BF16;
        const std::string shape = fmt::format("{}x{} {} adapters r={} rows={}", m, k, o.adapters, o.adapter_rank, o.rows);
        const double flops = 2.0 * double(o.rows) * double(o.adapter_rank) * double(m + k);
        const double bytes = double(o.adapters) * double(o.adapter_rank) * double(m + k) * 4;
        const std::string loop = "loop_over_adapters_gemm_f32";
        if (!bf) rep.add(Row{"multi_lora", loop, "", "f32", shape, "hot", t, tl, flops, bytes, 0, 0, std::nullopt, {}});
        Row r{"multi_lora", std::string(bank.kernel()) + (bf ? "+bf16_weights" : ""), loop, bf ? "bf16" : "f32", shape,
              "hot", t, tf, flops, bf ? bytes / 2 : bytes, tl.ms_median, max_rel_err(yf.data(), yl.data(), yf.size()),
              std::nullopt, {}};
        rep.add(r);
      }
    }
  }
}

}  // namespace tz::bench
