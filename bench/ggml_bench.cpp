// GGUF-block GEMM benchmark. For every type × n × threads: the dense f32 GEMM on the dequantized
// weights (OpenBLAS; also the error reference), then ggml_gemm on the blocks (ratio to f32).
#include "bench/ggml_bench.h"

#include <fmt/core.h>

#include <map>

#include "bench/membw.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/ggml_gemm.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/runtime.h"

namespace tz::bench {

int ggml_bench_cases(const GgmlBenchOptions& o) {
  return int(o.types.size() * o.n.size() * std::max<size_t>(1, o.threads.size()));
}

void bench_ggml(const GgmlBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  require(o.m > 0 && o.k > 0 && o.k % 256 == 0, "bench ggml: --m must be positive and --k a positive multiple of 256");
  for (int64_t n : o.n) require(n > 0, "bench ggml: --n values must be positive");
  std::vector<uint32_t> types;
  for (const auto& name : o.types) {
    const io::GgmlTypeInfo* ti = io::ggml_type_by_name(name);
    require(ti != nullptr && ggml_gemm_supported(ti->id) && io::ggml_quantize_supported(ti->id),
            "bench ggml: --types: '" + name + "' is not a block type this build can write and run");
    types.push_back(ti->id);
  }
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  const int64_t m = o.m, k = o.k;
  std::map<int, MembwResult> membw = gemm_rooflines(o.cold, o.n, threads);

  const auto w = gaussian(size_t(m * k), 7, 0.02f);
  for (uint32_t type : types) {
    const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
    std::vector<uint8_t> blocks(size_t(m * k) / ti->block_values * ti->block_bytes);
    io::quantize_ggml(type, w.data(), blocks.data(), size_t(m * k));
    const GgmlMatrix g0 = GgmlMatrix::from_blocks(type, m, k, blocks.data(), "bench");
    std::vector<float> wd(size_t(m * k));
    g0.dequantize(wd.data());
    const int g_copies = copies_for(g0.bytes(), o.cold), f32_copies = copies_for(wd.size() * 4, o.cold);
    std::vector<GgmlMatrix> cold_gs;  // each its own copy of the blocks
    for (int i = 0; i < g_copies; ++i) cold_gs.push_back(GgmlMatrix::from_blocks(type, m, k, blocks.data(), "bench"));
    const std::vector<std::vector<float>> wfs(size_t(f32_copies), wd);
    for (int64_t n : o.n) {
      const auto x = gaussian(size_t(n * k), 8);
      std::vector<float> ref(size_t(n * m)), y(ref.size());
      gemm_f32_openblas(n, m, k, x.data(), k, wd.data(), k, ref.data(), m);
      GemmCase c = gemm_case("ggml_gemm", ti->name, m, k, n, o.cold, o.warmup, o.repeats, o.budget_s, y, ref);
      for (int t : threads) {
        set_num_threads(t);
        progress(fmt::format("ggml {} {} threads={}", ti->name, c.shape, t));
        c.threads = t;
        c.roofline_gbps = o.cold && n <= 8 && membw.count(t) ? std::optional<double>(membw[t].gbps_best) : std::nullopt;
        const Row rf = time_gemm_case(c, "f32_openblas", "", 0, double(m * k) * 4, f32_copies, [&](int i) {
          gemm_f32_openblas(n, m, k, x.data(), k, wfs[size_t(i % f32_copies)].data(), k, y.data(), m);
        });
        rep.add(rf);
        Row rg = time_gemm_case(c, chosen_kernel("ggml_gemm"), "f32", rf.t.ms_median, double(g0.bytes()), g_copies,
                                [&](int i) { ggml_gemm(cold_gs[size_t(i % g_copies)], x.data(), n, k, y.data(), m); });
        rg.extra["bits_per_weight"] = 8.0 * double(g0.bytes()) / double(m * k);
        rep.add(rg);
      }
    }
  }
}

}  // namespace tz::bench
