// Low-bit GEMM benchmark. For every format x n x threads: the dense f32 GEMM on the dequantized
// weights (OpenBLAS; also the error reference), the dequant baseline (ratio to f32) and the LUT
// kernel (ratio to dequant, and to f32 in `ratio_to_f32`). --cold streams weights from DRAM and adds
// roofline_frac for n <= 8 against the bandwidth measured at the start of the run.
#include "bench/mpgemm_bench.h"

#include <fmt/core.h>

#include <map>
#include <random>

#include "bench/membw.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/runtime.h"

namespace tz::bench {
namespace {

QuantFormat format_of(const std::string& b, int group) {
  QuantFormat f;
  f.group = group;
  if (b == "t") {
    f.bits = 2;
    f.ternary = true;
    f.group = 0;  // BitNet b1.58: one scale per row
    return f;
  }
  int bits = 0;
  try {
    bits = std::stoi(b);
  } catch (...) {
  }
  require(bits >= 1 && bits <= 8, "bench mpgemm: --bits takes 1..8 or t, got '" + b + "'");
  f.bits = bits;
  return f;
}

}  // namespace

int mpgemm_bench_cases(const MpGemmBenchOptions& o) {
  return int(o.bits.size() * o.n.size() * std::max<size_t>(1, o.threads.size()));
}

void bench_mpgemm(const MpGemmBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  require(o.m > 0 && o.k > 0, "bench mpgemm: --m and --k must be positive");
  for (int64_t n : o.n) require(n > 0, "bench mpgemm: --n values must be positive");
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  const int64_t m = o.m, k = o.k;
  std::map<int, MembwResult> membw = gemm_rooflines(o.cold, o.n, threads);

  const auto w = gaussian(size_t(m * k), 7);
  for (const auto& b : o.bits) {
    const QuantFormat f = format_of(b, o.group);
    const QuantMatrix q = quantize_rtn_ref(w.data(), m, k, f);
    std::vector<float> wd(size_t(m * k));
    dequantize_ref(q, wd.data());
    const LutWeights lut0 = LutWeights::pack(q);
    const DequantWeights dq0 = DequantWeights::pack(q);
    const int lut_copies = copies_for(lut0.bytes(), o.cold), dq_copies = copies_for(dq0.bytes(), o.cold);
    const int f32_copies = copies_for(wd.size() * 4, o.cold);
    const std::vector<LutWeights> luts(size_t(lut_copies), lut0);
    const std::vector<DequantWeights> dqs(size_t(dq_copies), dq0);
    const std::vector<std::vector<float>> wfs(size_t(f32_copies), wd);
    const std::string fname = f.to_string();
    for (int64_t n : o.n) {
      const auto x = gaussian(size_t(n * k), 8);
      std::vector<float> ref(size_t(n * m)), y(ref.size());
      gemm_f32_openblas(n, m, k, x.data(), k, wd.data(), k, ref.data(), m);
      GemmCase c = gemm_case("mpgemm", fname, m, k, n, o.cold, o.warmup, o.repeats, o.budget_s, y, ref);
      for (int t : threads) {
        set_num_threads(t);
        progress(fmt::format("mpgemm {} {} threads={}", fname, c.shape, t));
        c.threads = t;
        c.roofline_gbps = o.cold && n <= 8 && membw.count(t) ? std::optional<double>(membw[t].gbps_best) : std::nullopt;
        const auto row = [&](const std::string& impl, const std::string& base, double base_ms, double wbytes, int copies,
                             const std::function<void(int)>& fn) {
          Row r = time_gemm_case(c, impl, base, base_ms, wbytes, copies, fn);
          return std::pair<Row, Timing>{r, r.t};
        };
        auto [rf, tf] = row("f32_openblas", "", 0, double(m * k) * 4, f32_copies, [&](int i) {
          gemm_f32_openblas(n, m, k, x.data(), k, wfs[size_t(i % f32_copies)].data(), k, y.data(), m);
        });
        rep.add(rf);
        auto [rd, td] = row("dequant_" + chosen_kernel("mpgemm_dequant"), "f32", tf.ms_median, double(dq0.bytes()), dq_copies,
                            [&](int i) { dequant_gemm(dqs[size_t(i % dq_copies)], x.data(), n, k, y.data(), m); });
        rep.add(rd);
        for (LutMode mode : o.exact ? std::vector<LutMode>{LutMode::Fast, LutMode::Exact} : std::vector<LutMode>{LutMode::Fast}) {
          const std::string impl = std::string(mode == LutMode::Fast ? "lut_fast_" : "lut_exact_") + chosen_kernel("mpgemm_lut");
          auto [rl, tl] = row(impl, "dequant", td.ms_median, double(lut0.bytes()), lut_copies, [&](int i) {
            mpgemm(luts[size_t(i % lut_copies)], x.data(), n, k, y.data(), m, mode, MpGemmPath::Lut);
          });
          rl.extra["ratio_to_f32"] = tf.ms_median / tl.ms_median;
          rep.add(rl);
        }
        // The int8 path on the same packed weights (what Auto picks from mpgemm_int8_min_tokens on), where
        // it has a vector kernel.
        if (chosen_kernel("mpgemm_int8").find("__ref") == std::string::npos && mpgemm_int8_supported(lut0)) {
          auto [ri, ti] = row("int8_" + chosen_kernel("mpgemm_int8"), "f32", tf.ms_median, double(lut0.bytes()), lut_copies, [&](int i) {
            mpgemm(luts[size_t(i % lut_copies)], x.data(), n, k, y.data(), m, LutMode::Fast, MpGemmPath::Int8);
          });
          rep.add(ri);
        }
      }
    }
  }
}

}  // namespace tz::bench
