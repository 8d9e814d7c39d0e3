// `tensorzip bench [op] ...`: benchmarks with min/median, GFLOP/s, GB/s and the ratio to a baseline
// measured in the same run. Without an op: the default set (membw + a gemm case).
#include <fmt/core.h>

#include <algorithm>

#include "bench/gemm_bench.h"
#include "bench/ggml_bench.h"
#include "bench/harness.h"
#include "bench/lowrank_bench.h"
#include "bench/membw.h"
#include "bench/model_bench.h"
#include "bench/mpgemm_bench.h"
#ifdef TZ_HAVE_FFTW
#include "bench/fftconv_bench.h"
#endif
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/progress.h"

namespace tz::cli {
namespace {

struct Common {
  bool json = false, cold = false;
  std::vector<int> threads;
  int repeats = 10, warmup = 1;
};

void add_common(CLI::App* cmd, Common& c) {
  cmd->add_flag("--json", c.json, "One JSON object per result line");
  cmd->add_option("-t,--threads", c.threads, "Thread counts to run, e.g. 1,2 (default: current)")->delimiter(',')->check(CLI::Range(1, 1024));
  cmd->add_option("-r,--repeats", c.repeats, "Timed repetitions (max; stops early after ~2 s)")->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", c.warmup, "Untimed warm-up runs")->check(CLI::Range(0, 1000));
}

void run_membw(const Common& c, bench::Reporter& rep, size_t mib) {
  const std::vector<int> threads = c.threads.empty() ? std::vector<int>{1, hardware_threads()} : c.threads;
  Progress bar(int(threads.size()), !c.json);
  for (int t : threads) {
    bar.step(fmt::format("membw threads={}", t));
    const auto r = bench::measure_membw(t, mib << 20, std::max(3, std::min(c.repeats, 10)));
    bench::Row row;
    row.op = "membw";
    row.impl = "read_sum";
    row.dtype = "f32";
    row.shape = fmt::format("{} MiB", mib);
    row.threads = t;
    row.cache = "cold";
    row.t.ms_min = double(mib << 20) / 1e9 / r.gbps_best * 1e3;
    row.t.ms_median = double(mib << 20) / 1e9 / r.gbps_median * 1e3;
    row.t.reps = std::max(3, std::min(c.repeats, 10));
    row.bytes = double(mib << 20);
    row.roofline_gbps = r.gbps_best;  // the roofline itself: roofline_frac of the median
    rep.add(row);
  }
}

void run_mpgemm(const Common& c, bench::MpGemmBenchOptions o, bench::Reporter& rep) {
  o.threads = c.threads;
  o.cold = c.cold;
  o.repeats = c.repeats;
  o.warmup = c.warmup;
  Progress bar(bench::mpgemm_bench_cases(o), !c.json);
  bench::bench_mpgemm(o, rep, [&](const std::string& s) { bar.step(s); });
}

void run_gemm(const Common& c, bench::GemmBenchOptions o, bench::Reporter& rep) {
  o.threads = c.threads;
  o.cold = c.cold;
  o.repeats = c.repeats;
  o.warmup = c.warmup;
  Progress bar(bench::gemm_bench_cases(o), !c.json);
  bench::bench_gemm(o, rep, [&](const std::string& s) { bar.step(s); });
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Benchmarks (ratios to a baseline measured in the same run)");
  static Common common;
  static bench::GemmBenchOptions gemm;
  static size_t membw_mib = 1024;
  add_common(cmd, common);

  auto* g = cmd->add_subcommand("gemm", "Dense GEMM Y = X·Wᵀ: OpenBLAS f32 and bf16 kernels vs the scalar reference");
  add_common(g, common);
  g->add_option("--m", gemm.m, "Output features (rows of W)")->check(positive());
  g->add_option("--k", gemm.k, "Inner dimension")->check(positive());
  g->add_option("--n", gemm.n, "Tokens (columns of activations), e.g. 1,64,512")->delimiter(',')->check(positive());
  g->add_option("--dtype", gemm.dtypes, "f32, bf16 or both: f32,bf16")->delimiter(',');
  g->add_flag("--cold", common.cold, "Cycle through weight copies totalling >= 1 GiB so they stream from DRAM");
  g->add_flag("!--no-ref", gemm.with_ref, "Do not time the (slow) scalar reference; still used for max_rel_err");
  g->callback([] {
    bench::Reporter rep(common.json);
    run_gemm(common, gemm, rep);
  });

  static bench::MpGemmBenchOptions mp;
  auto* lp = cmd->add_subcommand("mpgemm", "Low-bit GEMM: LUT kernel vs dequantize-then-FMA vs dense f32, same format, same run");
  add_common(lp, common);
  lp->add_option("--m", mp.m, "Output features (rows of W)")->check(positive());
  lp->add_option("--k", mp.k, "Inner dimension")->check(positive());
  lp->add_option("--n", mp.n, "Tokens, e.g. 1,8,32,256")->delimiter(',')->check(positive());
  lp->add_option("--bits", mp.bits, "Weight bits 1..8, or t for ternary (per-row scale), e.g. 1,2,3,4,t")->delimiter(',');
  lp->add_option("--group", mp.group, "Scale group along k: 32, 64, 128, 256 or 0 (whole row)");
  lp->add_flag("--cold", common.cold, "Cycle through weight copies totalling >= 1 GiB so they stream from DRAM");
  lp->add_flag("--exact", mp.exact, "Also time the exact (f32-table) mode");
  lp->callback([] {
    bench::Reporter rep(common.json);
    run_mpgemm(common, mp, rep);
  });

  static bench::GgmlBenchOptions gg;
  auto* ggc = cmd->add_subcommand("ggml", "GEMM on llama.cpp's weight blocks (GGUF types) vs dense f32 on the same weights, same run");
  add_common(ggc, common);
  ggc->add_option("--m", gg.m, "Output features (rows of W)")->check(positive());
  ggc->add_option("--k", gg.k, "Inner dimension (a multiple of 256)")->check(positive());
  ggc->add_option("--n", gg.n, "Tokens, e.g. 1,64")->delimiter(',')->check(positive());
  ggc->add_option("--types", gg.types, "GGUF block types, e.g. q4_0,q4_K,q6_K")->delimiter(',');
  ggc->add_flag("--cold", common.cold, "Cycle through weight copies totalling >= 1 GiB so they stream from DRAM");
  ggc->callback([] {
    gg.threads = common.threads;
    gg.cold = common.cold;
    gg.repeats = common.repeats;
    gg.warmup = common.warmup;
    bench::Reporter rep(common.json);
    Progress bar(bench::ggml_bench_cases(gg), !common.json);
    bench::bench_ggml(gg, rep, [&](const std::string& s) { bar.step(s); });
  });

#ifdef TZ_HAVE_FFTW
  static bench::FftConvBenchOptions fc;
  static std::vector<std::string> fc_n = {"1K", "4K", "16K", "64K"};
  auto* fcc = cmd->add_subcommand("fftconv", "Fused FFT long convolution vs FFTW (same causal convolution, same threads)");
  add_common(fcc, common);
  fcc->add_option("--b", fc.b, "Batch sizes, e.g. 1,8")->delimiter(',')->check(positive());
  fcc->add_option("--h", fc.h, "Channels (shrunk for large n so B·H·N <= 2^24)")->check(positive());
  fcc->add_option("--n", fc_n, "Sequence lengths, powers of two: 1K,4K,16K,64K,256K,1M")->delimiter(',');
  fcc->add_option("--dtype", fc.dtypes, "f32 and/or bf16 inputs")->delimiter(',');
  fcc->callback([] {
    fc.n.clear();
    for (const auto& s : fc_n) fc.n.push_back(bench::parse_size(s));
    fc.threads = common.threads;
    fc.repeats = common.repeats;
    fc.warmup = common.warmup;
    bench::Reporter rep(common.json);
    Progress bar(bench::fftconv_bench_cases(fc), !common.json);
    bench::bench_fftconv(fc, rep, [&](const std::string& s) { bar.step(s); });
  });
#endif

  // `lowrank` runs all three parts; `decomp` (randomized SVD, low-rank operator) and `adapters`
  // (fused multi-LoRA) are the names for its two halves.
  static bench::LowRankBenchOptions lr_all, lr_decomp, lr_adapters;
  lr_decomp.parts = {"rsvd", "op"};
  lr_adapters.parts = {"adapters"};
  // Each subcommand takes the options of the parts it runs (--parts only where it runs them all).
  const auto add_lowrank = [&](const char* name, const char* what, bench::LowRankBenchOptions& lr) {
    const auto runs = [&](const char* part) { return std::find(lr.parts.begin(), lr.parts.end(), part) != lr.parts.end(); };
    const bool decomp = runs("rsvd"), adapters = runs("adapters");
    auto* lrc = cmd->add_subcommand(name, what);
    add_common(lrc, common);
    if (decomp && adapters) lrc->add_option("--parts", lr.parts, "Any of rsvd, op, adapters")->delimiter(',');
    lrc->add_option("--m", lr.m, "Rows / output features")->check(positive());
    lrc->add_option("--k", lr.k, "Columns / input features")->check(positive());
    if (decomp) {
      lrc->add_option("--svd-rank", lr.svd_rank, "Rank of the randomized SVD")->check(positive());
      lrc->add_option("--oversample", lr.oversample, "Randomized SVD oversampling")->check(non_negative());
      lrc->add_option("--power-iters", lr.power_iters, "Randomized SVD power iterations")->check(non_negative());
      lrc->add_option("--op-rank", lr.op_rank, "Rank of the low-rank operator")->check(positive());
      lrc->add_option("--n", lr.n, "Tokens for the operator, e.g. 1,16,64,256")->delimiter(',')->check(positive());
    }
    if (adapters) {
      lrc->add_option("--adapters", lr.adapters, "Distinct LoRA adapters in the batch")->check(positive());
      lrc->add_option("--adapter-rank", lr.adapter_rank, "Rank of each adapter")->check(positive());
      lrc->add_option("--rows", lr.rows, "Batch rows (each names an adapter)")->check(positive());
    }
    lrc->callback([&lr] {
      lr.threads = common.threads;
      lr.repeats = common.repeats;
      lr.warmup = common.warmup;
      bench::Reporter rep(common.json);
      Progress bar(bench::lowrank_bench_cases(lr), !common.json);
      bench::bench_lowrank(lr, rep, [&](const std::string& s) { bar.step(s); });
    });
  };
  add_lowrank("lowrank", "Randomized vs full SVD, low-rank operator vs dense GEMM, fused multi-LoRA vs loop", lr_all);
  add_lowrank("decomp", "Randomized vs full SVD and the low-rank operator vs dense GEMM (lowrank --parts rsvd,op)",
              lr_decomp);
  add_lowrank("adapters", "Fused multi-LoRA batch vs the loop over adapters (lowrank --parts adapters)", lr_adapters);

  static bench::ModelBenchOptions mo;
  add_bench_serve(*cmd);
  auto* mdl = cmd->add_subcommand("model", "LLaMA model prefill/decode tokens/s per weight format, ratio to f32 in the same run");
  add_common(mdl, common);
  mdl->add_option("-m,--model", mo.model, "Model file or directory (default: --synthetic)");
  mdl->add_option("--synthetic", mo.synthetic, "7b:LAYERS (LLaMA-2-7B layer shapes, random weights) or DIM,HIDDEN,HEADS,LAYERS")->capture_default_str();
  mdl->add_option("--formats", mo.formats, "Weight formats, e.g. f32,bf16,q4,q2 (f32 is always the baseline)")->delimiter(',');
  mdl->add_flag("!--no-baseline", mo.baseline, "Skip the f32 baseline pass (no ratios; as llama-bench, which has none)");
  mdl->add_option("-p,--prefill", mo.prefill, "Prompt tokens of the prefill case")->capture_default_str()->check(positive());
  mdl->add_option("-n,--decode", mo.decode, "Decode steps timed per repetition (from an empty context, as llama-bench's tg)")->capture_default_str()->check(positive());
  mdl->add_option("--text", mo.text, "With -m: perplexity of each format on this text (documents split on blank lines)");
  mdl->add_option("--max-docs", mo.max_docs, "Documents scored for the perplexity")->capture_default_str()->check(positive());
  add_gpu_layers_option(mdl);
  mdl->callback([] {
    mo.threads = common.threads;
    mo.repeats = common.repeats;
    mo.warmup = common.warmup;
    bench::Reporter rep(common.json);
    Progress bar(bench::model_bench_cases(mo) * 2, !common.json);
    bench::bench_model(mo, rep, [&](const std::string& s) { bar.step(s); });
  });

  auto* mb = cmd->add_subcommand("membw", "DRAM read bandwidth with 1 and N threads (the roofline)");
  add_common(mb, common);
  mb->add_option("--mib", membw_mib, "Buffer size in MiB")->check(CLI::Range(16, 1 << 16));
  mb->callback([] {
    bench::Reporter rep(common.json);
    run_membw(common, rep, membw_mib);
  });

  cmd->callback([cmd] {
    if (!cmd->get_subcommands().empty()) return;
    // Default set: bandwidth roofline, a decode- and a prefill-shaped dense GEMM, then the low-bit
    // GEMM (2-bit, 4-bit, ternary) at decode and prefill against dequant and dense f32.
    bench::Reporter rep(common.json);
    run_membw(common, rep, 512);
    bench::GemmBenchOptions d;
    d.m = 2048;
    d.k = 2048;
    d.n = {1, 64};
    run_gemm(common, d, rep);
    bench::MpGemmBenchOptions mp_default;
    mp_default.bits = {"2", "4", "t"};
    mp_default.n = {1, 256};
    run_mpgemm(common, mp_default, rep);
  });
}

}  // namespace tz::cli
