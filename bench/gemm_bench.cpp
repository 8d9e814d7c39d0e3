// Dense GEMM benchmark. Rows: the library backend (OpenBLAS sgemm for f32; the dispatched bf16
// kernel) and the kernel the current dispatch picks, each against the scalar reference timed in the
// same run. Memory-bound cases (n <= 8) carry roofline_frac when --cold.
#include "bench/gemm_bench.h"

#include <fmt/core.h>

#include <map>
#include <random>

#include "bench/membw.h"
#include "tensorzip/convert.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/runtime.h"
#include "tensorzip/tensor.h"

namespace tz::bench {
namespace {

}  // namespace

int gemm_bench_cases(const GemmBenchOptions& o) {
  return int(o.dtypes.size() * o.n.size() * std::max<size_t>(1, o.threads.size()));
}

void bench_gemm(const GemmBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  for (const auto& dt : o.dtypes)
    require(dt == "f32" || dt == "bf16", "bench gemm: --dtype must be f32 or bf16, got '" + dt + "'");
  require(o.m > 0 && o.k > 0, "bench gemm: --m and --k must be positive");
  for (int64_t n : o.n) require(n > 0, "bench gemm: --n values must be positive");
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  const int64_t m = o.m, k = o.k;

  // Weights: f32 master and bf16 copies, replicated for --cold so each rep reads fresh DRAM.
  const size_t wn = size_t(m * k);
  const auto w_master = gaussian(wn, 1);
  std::map<int, MembwResult> membw = gemm_rooflines(o.cold, o.n, threads);

  for (const auto& dt : o.dtypes) {
    const bool bf = dt == "bf16";
    const size_t wbytes = wn * (bf ? 2 : 4);
    const int copies = copies_for(wbytes, o.cold);
    std::vector<std::vector<float>> wf(bf ? 0 : copies);
    std::vector<std::vector<uint16_t>> wb(bf ? copies : 0);
    for (int c = 0; c < copies; ++c) {
      if (bf) {
        wb[size_t(c)].resize(wn);
        f32_to_bf16(w_master.data(), wb[size_t(c)].data(), wn);
      } else {
        wf[size_t(c)] = w_master;
      }
    }
    for (int64_t n : o.n) {
      const auto x = gaussian(size_t(n * k), 2);
      std::vector<uint16_t> xb(x.size());
      f32_to_bf16(x.data(), xb.data(), x.size());
      std::vector<float> ref(static_cast<size_t>(n * m)), y(size_t(n * m));
      const std::string shape = fmt::format("m={} k={} n={}", m, k, n);
      const double flops = 2.0 * double(n) * double(m) * double(k);
      const double bytes = double(wbytes) + double(n * k) * (bf ? 2 : 4) + double(n * m) * 4;

      // Scalar reference: timed once or a few times (it is slow), also the error oracle.
      Timing tref;
      const auto run_ref = [&](int) {
        if (bf) gemm_bf16_ref(n, m, k, xb.data(), k, wb[0].data(), k, ref.data(), m);
        else gemm_f32_ref(n, m, k, x.data(), k, wf[0].data(), k, ref.data(), m);
      };
      if (o.with_ref) tref = time_it(run_ref, 0, 3, 1.0, 1);
      else run_ref(0);  // still needed for max_rel_err
      const std::string ref_name = bf ? "gemm_bf16_bf16_f32__ref" : "gemm_f32_f32_f32__ref";
      const std::string base = o.with_ref ? ref_name : "";

      for (int t : threads) {
        set_num_threads(t);
        progress(fmt::format("gemm {} {} threads={}", dt, shape, t));
        if (o.with_ref && t == threads.front()) {
          Row r{"gemm", ref_name, "", dt, shape, "hot", 1, tref, flops, bytes, 0, 0, std::nullopt, {}};
          rep.add(r);
        }
        const auto add_row = [&](const std::string& impl, const std::function<void(int)>& fn) {
          std::fill(y.begin(), y.end(), 0.f);
          fn(0);
          const double err = max_rel_err(y.data(), ref.data(), y.size());
          // Cold: warm up over every copy once (page state, clocks), then time cycling through them.
          const Timing tt = time_it(fn, o.cold ? std::max(o.warmup, copies) : o.warmup, o.repeats, o.budget_s);
          Row r{"gemm", impl, base, dt, shape, o.cold ? "cold" : "hot", t, tt, flops, bytes,
                o.with_ref ? tref.ms_median : 0, err, std::nullopt, {}};
          if (o.cold && n <= 8 && membw.count(t)) r.roofline_gbps = membw[t].gbps_best;
          r.extra["copies"] = copies;
          rep.add(r);
        };
        if (bf) {
          add_row(chosen_kernel("gemm_bf16"), [&](int rep_i) {
            gemm_bf16(n, m, k, xb.data(), k, wb[size_t(rep_i % copies)].data(), k, y.data(), m);
          });
        } else {
          add_row("gemm_f32_f32_f32__openblas", [&](int rep_i) {
            gemm_f32_openblas(n, m, k, x.data(), k, wf[size_t(rep_i % copies)].data(), k, y.data(), m);
          });
          const std::string chosen = chosen_kernel("gemm_f32");
          if (chosen != "gemm_f32_f32_f32__openblas" && chosen != ref_name)
            add_row(chosen, [&](int rep_i) {
              gemm_f32(n, m, k, x.data(), k, wf[size_t(rep_i % copies)].data(), k, y.data(), m);
            });
        }
      }
    }
  }
}

}  // namespace tz::bench
