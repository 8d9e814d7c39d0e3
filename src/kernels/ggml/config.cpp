// Dispatch and driver of the llama.cpp-block GEMM: argument checks, per-token int8 activation
// quantization, threading over row ranges; GgmlMatrix itself.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/ggml/ggml_gemm.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace detail {
using namespace kernels;

KernelFamily<GgmlGemmConfig>& ggml_gemm_family() {
  static KernelFamily<GgmlGemmConfig> f("ggml_gemm", {
      {"ggmlgemm_blk_i8_f32_x8__avx512vnni", Isa::Avx512, kAvx512Vnni, {ggmlgemm_blk_i8_f32_x8__avx512vnni, &kActQuantizersAvx512}},
      {"ggmlgemm_blk_i8_f32__ref", Isa::Scalar, 0, {ggmlgemm_blk_i8_f32__ref, &kActQuantizersRef}},
  });
  return f;
}

}  // namespace detail

namespace {
using namespace kernels;

// x [n, k] (row stride ldx) → int8 per 32 values, d16 / s16 per 16 (Q8Row); zeros past k.
struct Q8Acts {
  int64_t k_pad;
  std::vector<int8_t> q;
  std::vector<float> d16, s16;
  std::vector<Q8Row> rows;
};

// The activation blocks llama.cpp's CPU backend pairs with each weight type, reproduced so the
// products round as its do: q8_K (256 values, d = −max/127 of the signed extreme, round to nearest
// even; ggml uses this reference code on x86) for the K-quants, iq4_xs and the ternary types;
// q8_0 (32 values, d = amax/127 kept as f16, codes from the unrounded 127/amax, ties to even as
// its AVX path rounds) for the others.
bool uses_q8_k(uint32_t type) {
  switch (type) {
    case io::kGgmlQ2_K: case io::kGgmlQ3_K: case io::kGgmlQ4_K: case io::kGgmlQ5_K: case io::kGgmlQ6_K:
    case io::kGgmlIQ4_XS: case io::kGgmlTQ1_0: case io::kGgmlTQ2_0: return true;
    default: return false;
  }
}

// Into `a` (reused across calls: decode calls this once per matrix per token).
void quantize_acts(const ActQuantizers& qz, uint32_t type, const float* x, int64_t n, int64_t ldx, int64_t k, Q8Acts& a) {
  a.k_pad = ggml_k_pad(k);
  a.q.resize(size_t(n * a.k_pad));
  a.d16.resize(size_t(n * a.k_pad / 16));
  a.s16.resize(a.d16.size());
  a.rows.resize(size_t(n));
  const auto one = [&](int64_t t) {
    int8_t* q = &a.q[size_t(t * a.k_pad)];
    float *d16 = &a.d16[size_t(t * a.k_pad / 16)], *s16 = &a.s16[size_t(t * a.k_pad / 16)];
    const QuantizeActsFn f = uses_q8_k(type) ? qz.q8_k : type == io::kGgmlQ4_1 || type == io::kGgmlQ5_1 ? qz.q8_1 : qz.q8_0;
    f(x + t * ldx, k, a.k_pad, q, d16, s16);
    a.rows[size_t(t)] = {&a.q[size_t(t * a.k_pad)], &a.d16[size_t(t * a.k_pad / 16)], &a.s16[size_t(t * a.k_pad / 16)]};
  };
  if (n >= 8) parallel_for(n, [&](int64_t t, int) { one(t); });
  else
    for (int64_t t = 0; t < n; ++t) one(t);
}

void check_args(const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  require(ggml_gemm_supported(w.type), std::string("ggml_gemm: type ") + w.type_name() + " is not supported");
  require(n >= 0 && ldx >= w.cols && ldy >= w.rows, "ggml_gemm: bad strides (ldx " + std::to_string(ldx) + " < k " +
                                                         std::to_string(w.cols) + " or ldy " + std::to_string(ldy) + " < m " +
                                                         std::to_string(w.rows) + ")");
  require(n == 0 || (x != nullptr && y != nullptr), "ggml_gemm: null operand");
}

void run(const GgmlGemmConfig& cfg, const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, bool threaded) {
  check_args(w, x, n, ldx, y, ldy);
  if (n == 0 || w.rows == 0) return;
  thread_local Q8Acts caller_acts;
  Q8Acts& a = caller_acts;  // a reference: inside the workers' lambda the name would be their own thread_local
  quantize_acts(*cfg.quant, w.type, x, n, ldx, w.cols, a);
  // Few large contiguous row ranges per thread (each a long sequential stream for the prefetchers);
  // eight per thread leave room for dynamic balancing.
  const int64_t per_task = std::max<int64_t>(16, (w.rows + 8 * num_threads() - 1) / (8 * num_threads()) + 15) / 16 * 16;
  const int64_t kRowsPerTask = per_task;
  const int64_t tasks = (w.rows + kRowsPerTask - 1) / kRowsPerTask;
  const auto task = [&](int64_t i, int) {
    GgmlRowsArgs g{&w, i * kRowsPerTask, std::min(w.rows, (i + 1) * kRowsPerTask), n, a.rows.data(), y, ldy};
    cfg.rows(g);
  };
  if (threaded) parallel_for(tasks, task);
  else
    for (int64_t i = 0; i < tasks; ++i) task(i, 0);
}

}  // namespace

bool ggml_gemm_supported(uint32_t type) { return kernels::ggml_decoder__ref(type) != nullptr; }

GgmlMatrix GgmlMatrix::borrow(uint32_t type, int64_t rows, int64_t cols, const uint8_t* blocks, std::shared_ptr<const void> owner,
                              const std::string& what) {
  const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
  require(ti != nullptr && ggml_gemm_supported(type),
          what + ": ggml type " + (ti ? ti->name : std::to_string(type)) + " is not one the block kernels run");
  require(rows > 0 && cols > 0 && cols % int64_t(ti->block_values) == 0,
          what + ": " + std::to_string(cols) + " columns are not whole " + ti->name + " blocks of " + std::to_string(ti->block_values));
  require(blocks != nullptr, what + ": no data");
  GgmlMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  m.row_bytes_ = size_t(cols) / ti->block_values * ti->block_bytes;
  m.blocks_ = blocks;
  m.owner_ = std::move(owner);
  return m;
}

GgmlMatrix GgmlMatrix::from_blocks(uint32_t type, int64_t rows, int64_t cols, const uint8_t* blocks, const std::string& what) {
  GgmlMatrix m = borrow(type, rows, cols, blocks, nullptr, what);
  auto copy = std::make_shared<std::vector<uint8_t>>(blocks, blocks + m.bytes());
  m.blocks_ = copy->data();
  m.owner_ = std::move(copy);
  return m;
}

const char* GgmlMatrix::type_name() const {
  const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
  return ti ? ti->name : "unknown";
}

void GgmlMatrix::dequantize_row(int64_t r, float* w) const { io::dequantize_ggml(type, row(r), w, size_t(cols)); }

void GgmlMatrix::dequantize(float* w) const {
  for (int64_t r = 0; r < rows; ++r) dequantize_row(r, w + r * cols);
}

void ggml_gemm(const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  run(detail::ggml_gemm_family().config(), w, x, n, ldx, y, ldy, true);
}

void ggml_gemm_ref(const GgmlMatrix& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  run({kernels::ggmlgemm_blk_i8_f32__ref, &kernels::kActQuantizersRef}, w, x, n, ldx, y, ldy, false);
}

}  // namespace tz
