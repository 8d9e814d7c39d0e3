// Dispatch table of the low-bit GEMM family and the drivers: argument checks, per-group table
// scales, table building (fused per thread for decode, one parallel pass for prefill), threading.
#include <algorithm>
#include <atomic>
#include <limits>
#include <cmath>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "kernels/lora/lora.h"
#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace detail {
using namespace kernels;

// Tile and crossover numbers: docs/kernels.md; the int8 crossovers measured in docs/benchmarks.md.
KernelFamily<LutConfig>& mpgemm_lut_family() {
  static KernelFamily<LutConfig> f("mpgemm_lut", {
      {"lutgemm_qbg4_f32_f32_16x4__avx512vbmi", Isa::Avx512, kAvx512Vnni | kAvx512Vbmi, {lutgemm_qbg4_f32_f32_16x4__avx512vbmi, 16, 4}},
      {"lutgemm_qbg4_f32_f32_16x4__avx2", Isa::Avx2, 0, {lutgemm_qbg4_f32_f32_16x4__avx2, 16, 4}},
      {"lutgemm_qbg4_f32_f32__ref", Isa::Scalar, 0, {lutgemm_qbg4_f32_f32__ref, 16, 4}},
  });
  return f;
}

KernelFamily<LutTablesConfig>& mpgemm_lut_tables_family() {
  static KernelFamily<LutTablesConfig> f("mpgemm_lut_tables", {
      {"luttables_g4_f32__avx512", Isa::Avx512, 0, {luttables_g4_f32__avx512}},
      {"luttables_g4_f32__ref", Isa::Scalar, 0, {luttables_g4_f32__ref}},
  });
  return f;
}

// min_tokens: AMX against the VBMI LUT kernel; AVX-512-VNNI against the VBMI LUT kernel it runs
// beside on every CPU measured (on a VNNI CPU without VBMI the AVX2 LUT kernel would lose sooner);
// AVX-VNNI and AVX2 against the AVX2 LUT kernel, which loses from the first full prefill block.
KernelFamily<Int8Config>& mpgemm_int8_family() {
  static KernelFamily<Int8Config> f("mpgemm_int8", {
      {"qgemm_qbg_i8_f32_32x32__amx", Isa::Amx, kAmxInt8, {qgemm_qbg_i8_f32_32x32__amx, 32, 32, {32, 24, 24}}},
      {"qgemm_qbg_i8_f32_32x6__avx512vnni", Isa::Avx512, kAvx512Vnni, {qgemm_qbg_i8_f32_32x6__avx512vnni, 32, 6, {96, 48, 32}}},
      {"qgemm_qbg_i8_f32_16x6__avxvnni", Isa::Avx2, kAvxVnni, {qgemm_qbg_i8_f32_16x6__avxvnni, 16, 6, {5, 5, 5}}},
      {"qgemm_qbg_i8_f32_16x6__avx2", Isa::Avx2, 0, {qgemm_qbg_i8_f32_16x6__avx2, 16, 6, {5, 5, 5}}},
      {"qgemm_qbg_i8_f32__ref", Isa::Scalar, 0, {qgemm_qbg_i8_f32__ref, 1, 1, {0, 0, 0}}},
  });
  return f;
}

KernelFamily<DequantConfig>& mpgemm_dequant_family() {
  static KernelFamily<DequantConfig> f("mpgemm_dequant", {
      {"dqgemm_qb_f32_f32_4x4__avx512", Isa::Avx512, 0, {dqgemm_qb_f32_f32_4x4__avx512, 4, 4}},
      {"dqgemm_qb_f32_f32__ref", Isa::Scalar, 0, {dqgemm_qb_f32_f32__ref, 1, 4}},
  });
  return f;
}

}  // namespace detail

namespace {

constexpr int kMaxNb = 4;  // activation columns per LUT / dequant kernel call (LutArgs, DequantArgs)

void check_args(const char* who, int64_t rows, int64_t cols, const void* x, int64_t n, int64_t ldx, const void* y, int64_t ldy) {
  const std::string p = std::string(who) + ": ";
  require(n >= 0, p + "negative n");
  require(ldx >= cols, p + "ldx " + std::to_string(ldx) + " < k " + std::to_string(cols));
  require(ldy >= rows, p + "ldy " + std::to_string(ldy) + " < m " + std::to_string(rows));
  require(n == 0 || (x != nullptr && y != nullptr), p + "null pointer");
}

// Table scale per block of lut_scale_block() activations (fast mode: the block's largest |table
// entry| maps to 127) and Σa per weight group.
struct ColumnStats {
  std::vector<float> ts, sa;
};

ColumnStats column_stats(const LutWeights& w, const float* x, LutMode mode) {
  ColumnStats s;
  const int64_t k = w.cols(), sbk = kernels::lut_scale_block(w), blocks = (w.k_pad() + sbk - 1) / sbk;
  s.ts.assign(size_t(blocks), 1.f);
  s.sa.assign(size_t(w.groups()), 0.f);
  for (int64_t b = 0; b < blocks; ++b) {
    float amax = 0.f, sum = 0.f;
    for (int64_t q = b * sbk; q < std::min(k, (b + 1) * sbk); q += 4) {
      float qa = 0.f;
      for (int64_t t = q; t < std::min(k, q + 4); ++t) {
        qa += std::fabs(x[t]);
        sum += x[t];
      }
      amax = std::max(amax, qa);
    }
    if (mode == LutMode::Fast && amax > 0.f) s.ts[size_t(b)] = amax / 127.f;
    s.sa[size_t(b * sbk / w.group_cols())] += sum;
  }
  return s;
}

size_t table_bytes(const LutWeights& w, LutMode mode) {
  return size_t(w.k_pad() / 4) * 16 * (mode == LutMode::Fast ? 1 : 4);
}

struct Column {
  ColumnStats stats;
  std::vector<uint8_t> tab;
};

void build_column(const LutWeights& w, const float* x, LutMode mode, Column& c) {
  c.stats = column_stats(w, x, mode);
  c.tab.resize(table_bytes(w, mode) + 64);
  detail::mpgemm_lut_tables_family().config().build(x, w.cols(), w.k_pad(), kernels::lut_scale_block(w), mode,
                                                              c.stats.ts.data(), c.tab.data());
}

// Y[i, o] += Σ_j H[i, j] · Lᵀ[j, o] for the output rows of tiles [t0, t1) and tokens [n0, n0 + nb):
// the multi-LoRA expand kernel (register-blocked, dispatched per ISA) as one task whose rows are
// the tokens.
void add_lowrank(const LowRankEpilogue& e, int64_t rows, int64_t t0, int64_t t1, int64_t n0, int64_t nb, float* y, int64_t ldy) {
  const kernels::lora::Kernels& k = detail::lora_bgmv_family().config();
  int32_t tok[kMaxNb];
  for (int64_t i0 = n0; i0 < n0 + nb; i0 += kMaxNb) {
    const int64_t cnt = std::min<int64_t>(kMaxNb, n0 + nb - i0);
    for (int64_t q = 0; q < cnt; ++q) tok[q] = int32_t(i0 + q);
    const kernels::lora::Task t{nullptr, e.lt, nullptr, nullptr, e.rank, 1.f, tok, cnt};
    k.expand(t, e.h + i0 * e.ldh, e.ldh, rows, t0 * 16, std::min(rows, t1 * 16), y, ldy);
  }
}

void run_block(const LutWeights& w, LutMode mode, int64_t t0, int64_t t1, Column* cols, int nb, float* y, int64_t ldy, int64_t n0,
               const LowRankEpilogue* lowrank) {
  kernels::LutColumn lc[kMaxNb];
  float* yp[kMaxNb];
  for (int i = 0; i < nb; ++i) {
    lc[i] = {cols[i].tab.data(), cols[i].stats.ts.data(), cols[i].stats.sa.data()};
    yp[i] = y + (n0 + i) * ldy;
  }
  detail::mpgemm_lut_family().config().kernel({&w, mode, t0, t1, nb, lc, yp});
  if (lowrank != nullptr) add_lowrank(*lowrank, w.rows(), t0, t1, n0, nb, y, ldy);
}

}  // namespace

int64_t mpgemm_int8_min_tokens(int bits) {
  const int m = detail::mpgemm_int8_family().config().min_tokens[bits <= 2 ? 0 : bits <= 4 ? 1 : 2];
  return m > 0 ? m : std::numeric_limits<int64_t>::max();
}

bool mpgemm_int8_supported(const LutWeights& w) {
  return w.planes() <= 8 && (w.group_cols() % 64 == 0 || w.groups() == 1);
}

void mpgemm(const LutWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, LutMode mode,
            MpGemmPath path, const LowRankEpilogue* lowrank) {
  check_args("mpgemm", w.rows(), w.cols(), x, n, ldx, y, ldy);
  if (lowrank != nullptr) {
    require(lowrank->rank >= 0 && (lowrank->rank == 0 || (lowrank->h != nullptr && lowrank->lt != nullptr)),
            "mpgemm: low-rank branch needs H and Lᵀ");
    require(lowrank->rank == 0 || lowrank->ldh >= lowrank->rank, "mpgemm: low-rank H row stride " +
                                                                     std::to_string(lowrank->ldh) + " < rank " + std::to_string(lowrank->rank));
    if (lowrank->rank == 0) lowrank = nullptr;
  }
  if (n == 0 || w.rows() == 0) return;
  if (path == MpGemmPath::Int8) {
    require(mode == LutMode::Fast, "mpgemm: the int8 path is a fast-mode path (activations quantized to int8)");
    require(mpgemm_int8_supported(w), "mpgemm: the int8 path needs a group that is a multiple of 64 or the whole row");
  }
  // Auto takes the int8 path from the chosen kernel's crossover on (never for the scalar twin).
  if (path == MpGemmPath::Int8 || (path == MpGemmPath::Auto && mode == LutMode::Fast &&
                                   n >= mpgemm_int8_min_tokens(w.planes()) && mpgemm_int8_supported(w))) {
    detail::mpgemm_int8_family().config().gemm(w, x, n, ldx, y, ldy);
    // The int8 tile kernel has no epilogue hook: the branch follows as one more pass (prefill only,
    // where the GEMM dominates).
    if (lowrank != nullptr)
      parallel_for(w.tiles(), [&](int64_t t, int) { add_lowrank(*lowrank, w.rows(), t, t + 1, 0, n, y, ldy); });
    return;
  }
  const int64_t tiles = w.tiles();
  const int threads = num_threads();
  if (n <= kMaxNb) {
    // Decode: every thread builds the (small) tables itself the first time it runs a task, so no
    // pass over the activations precedes the kernel and no barrier separates them.
    std::vector<std::vector<Column>> per_thread(static_cast<size_t>(threads));
    // Below ~0.5 M weight-tokens a call takes ~10 µs on one core: waking a second thread costs more.
    const bool tiny = w.rows() * w.cols() * n < (int64_t(1) << 19);
    const int64_t tasks = std::min<int64_t>(tiles, threads == 1 || tiny ? 1 : int64_t(threads) * 2);
    parallel_for(tasks, [&](int64_t task, int th) {
      auto& cols = per_thread[size_t(th)];
      if (cols.empty()) {
        cols.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) build_column(w, x + i * ldx, mode, cols[size_t(i)]);
      }
      const Range r = split_range(tiles, tasks, task);
      if (r.begin < r.end) run_block(w, mode, r.begin, r.end, cols.data(), int(n), y, ldy, 0, lowrank);
    });
    return;
  }
  // Prefill: tables for all columns in one parallel pass, then tiles in blocks whose weights stay
  // in L2 while every block of 4 columns passes over them.
  std::vector<Column> cols(static_cast<size_t>(n));
  parallel_for(n, [&](int64_t i, int) { build_column(w, x + i * ldx, mode, cols[size_t(i)]); });
  constexpr int64_t kTileBlock = 4;
  const int64_t blocks = (tiles + kTileBlock - 1) / kTileBlock;
  parallel_for(blocks, [&](int64_t b, int) {
    const int64_t t0 = b * kTileBlock, t1 = std::min(tiles, t0 + kTileBlock);
    for (int64_t n0 = 0; n0 < n; n0 += kMaxNb)
      run_block(w, mode, t0, t1, cols.data() + n0, int(std::min<int64_t>(kMaxNb, n - n0)), y, ldy, n0, lowrank);
  });
}

void mpgemm_bf16(const LutWeights& w, const uint16_t* x, int64_t n, int64_t ldx, float* y, int64_t ldy, LutMode mode) {
  check_args("mpgemm_bf16", w.rows(), w.cols(), x, n, ldx, y, ldy);
  std::vector<float> xf(size_t(n * w.cols()));
  for (int64_t i = 0; i < n; ++i) bf16_to_f32(x + i * ldx, xf.data() + i * w.cols(), size_t(w.cols()));
  mpgemm(w, xf.data(), n, w.cols(), y, ldy, mode);
}

void dequant_gemm(const DequantWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  check_args("dequant_gemm", w.rows(), w.cols(), x, n, ldx, y, ldy);
  if (n == 0 || w.rows() == 0) return;
  std::vector<std::vector<float>> gsum(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    gsum[size_t(i)].assign(size_t(w.groups()), 0.f);
    for (int64_t k = 0; k < w.cols(); ++k) gsum[size_t(i)][size_t(k / w.group_cols())] += x[i * ldx + k];
  }
  const int threads = num_threads();
  const int64_t tasks = std::min<int64_t>(w.rows(), threads == 1 ? 1 : int64_t(threads) * 4);
  const auto fn = detail::mpgemm_dequant_family().config().kernel;
  parallel_for(tasks, [&](int64_t task, int) {
    const Range r = split_range(w.rows(), tasks, task);
    for (int64_t n0 = 0; n0 < n; n0 += kMaxNb) {
      const int nb = int(std::min<int64_t>(kMaxNb, n - n0));
      const float* xp[kMaxNb];
      const float* gp[kMaxNb];
      float* yp[kMaxNb];
      for (int i = 0; i < nb; ++i) {
        xp[i] = x + (n0 + i) * ldx;
        gp[i] = gsum[size_t(n0 + i)].data();
        yp[i] = y + (n0 + i) * ldy;
      }
      if (r.begin < r.end) fn({&w, r.begin, r.end, nb, xp, gp, yp});
    }
  });
}

}  // namespace tz
