// Calibrated weight quantizers for one linear layer W [out, in] (y = W·x):
//   RTN      round to nearest per group, optional clip search (per group, the clip ratio with the
//            least activation-weighted squared error);
//   AWQ      per-input-channel scales s = mean|x|^α, α searched on calibration rows to minimise the
//            layer's output error; W·diag(s) is quantized and s is stored (y = Q·(x / s));
//   GPTQ     H = 2·XᵀX/n, dampening, the upper Cholesky factor of H⁻¹, column-by-column quantization
//            with error feedback, lazy updates in blocks, optional act-order (with static groups:
//            group scales are fixed from W first, so groups stay contiguous for the kernels);
//   ternary  BitNet b1.58 absmean (one scale per group or row), and 1-bit (sign · mean|w|).
// Extras, composable with every method:
//   outliers the k input channels with the largest mean |x| are kept dense (f16), LLM.int8-style;
//   low-rank W ≈ Q + L·R of rank r fitted to the quantization error: in the activation eigenspace
//            (EoRA: minimises ‖X(W − Q − LR)ᵀ‖), by alternating Q and LR (LQ-LoRA), or plain SVD.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <memory>

#include "tensorzip/format.h"
#include "tensorzip/ggml_gemm.h"

namespace tz {

// Statistics of a layer's inputs, accumulated batch by batch (memory O(in² + keep_rows·in)).
class ActStats {
 public:
  ActStats() = default;
  ActStats(int64_t in, bool hessian, int64_t keep_rows = 512);
  void add(const float* x, int64_t n);  // n rows of `in` values
  int64_t in() const { return in_; }
  int64_t tokens() const { return tokens_; }
  bool has_hessian() const { return !xtx_.empty(); }
  // E[x xᵀ] (in x in, row-major); requires hessian = true.
  std::vector<float> second_moment() const;
  std::vector<float> mean_abs() const;      // E|x_j|
  std::vector<float> mean_square() const;   // E[x_j²]
  const std::vector<float>& sample() const { return sample_; }  // the first keep_rows rows
  int64_t sample_rows() const { return in_ == 0 ? 0 : int64_t(sample_.size()) / in_; }

 private:
  int64_t in_ = 0, tokens_ = 0, keep_rows_ = 0;
  std::vector<double> xtx_;  // Σ x xᵀ (upper triangle filled by syrk, mirrored on read)
  std::vector<double> abs_sum_, sq_sum_;
  std::vector<float> sample_;
};

enum class QuantMethod { Rtn, Awq, Gptq, Ternary };
enum class LowRankMethod { Eora, LqLora, Svd };
QuantMethod parse_quant_method(const std::string& s);  // rtn, awq, gptq, ternary
LowRankMethod parse_lowrank_method(const std::string& s);  // eora, lqlora, svd
const char* quant_method_name(QuantMethod m);

struct QuantizeOptions {
  QuantMethod method = QuantMethod::Rtn;
  QuantFormat fmt;            // bits, group, symmetric, scale dtype (ternary: set by the method)
  bool clip_search = false;   // RTN / AWQ
  double gptq_damp = 0.01;    // fraction of the mean diagonal of H
  int gptq_block = 128;
  bool act_order = false;
  bool gptq_awq = false;      // GPTQ on AWQ-scaled weights (scales searched with RTN first)
  int awq_grid = 20;          // α ∈ {0, 1/grid, ..., 1}
  const std::vector<float>* awq_scale = nullptr;  // AWQ with this s instead of searching
  int outliers = 0;           // input channels kept dense
  int lowrank = 0;            // rank of the compensation
  LowRankMethod lowrank_method = LowRankMethod::Eora;
  int lqlora_iters = 4;
};

// A compressed linear layer: y = Q·(x ⊘ s) + W_out·x[outlier_cols] + L·(R·x), or with an input
// permutation (GPTQ act-order checkpoints, whose groups are not contiguous) y = Q·x[input_perm] + L·(R·x).
struct CompressedLinear {
  QuantMatrix q;                      // [out, in]; outlier columns hold zeros
  std::vector<int32_t> input_perm;    // column j of q reads input input_perm[j]; empty: identity (not with s / outliers)
  std::vector<float> input_scale;     // s (AWQ), empty when none
  std::vector<int32_t> outlier_cols;  // ascending input channels kept dense
  std::vector<float> outlier_w;       // [out, outliers], values exactly representable in f16
  int64_t rank = 0;
  std::vector<float> lora_l, lora_r;  // L [out, rank], R [rank, in]
  std::string method;                 // how it was made (report / file metadata)
  // A GGUF matrix kept as llama.cpp's own blocks (run by ggml_gemm): then q is empty and there are
  // no extras. Shared: copies of a model share the bytes.
  std::shared_ptr<const GgmlMatrix> ggml;

  int64_t rows() const { return ggml ? ggml->rows : q.rows; }
  int64_t cols() const { return ggml ? ggml->cols : q.cols; }
  void dequantize(float* w) const;    // the dense Ŵ [out, in] it stands for
  size_t bytes() const;               // codes + scales + zeros + extras as stored
  double bits_per_weight() const { return double(bytes()) * 8.0 / double(rows() * cols()); }
};

// Throws tz::Error for methods that need statistics when `stats` is null (AWQ, GPTQ, EoRA, outliers),
// for shapes that disagree, or for non-finite weights.
CompressedLinear compress_linear(const float* w, int64_t rows, int64_t cols, const ActStats* stats, const QuantizeOptions& o);

// AWQ's per-input-channel scale for layers that read the same input (q/k/v, gate/up): the α whose
// s = E|x|^α gives the least summed squared relative output error over all of them.
std::vector<float> awq_search(const std::vector<std::pair<const float*, int64_t>>& ws, int64_t cols, const ActStats& st,
                              const QuantizeOptions& o);

// ‖W − Ŵ‖_F / ‖W‖_F and, on the sample rows X, ‖X(W − Ŵ)ᵀ‖_F / ‖XWᵀ‖_F (0 without stats).
struct QuantError { double weight_rel = 0, output_rel = 0; };
QuantError quant_error(const float* w, const float* w_hat, int64_t rows, int64_t cols, const ActStats* stats);

}  // namespace tz
