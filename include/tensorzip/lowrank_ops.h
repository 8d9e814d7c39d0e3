// Factored linear operators applied without rebuilding the dense weight, and LoRA-family adapters
// on a frozen base weight, one at a time or many per batch (S-LoRA).
//
// Layout as everywhere in tensorzip: a linear layer y = x·Wᵀ with W [out, in] row-major, x [n, in],
// y [n, out]. LoRA: W' = W + s·B·A with A [r, in] (PEFT lora_A), B [out, r] (lora_B), s = α / r.
#pragma once
#include <cstdint>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "tensorzip/decompose.h"
#include "tensorzip/memory.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/tensor.h"

namespace tz {

// W ≈ B · A with B = U·diag(S) [out, r] and A = Vt [r, in]: y = (x·Aᵀ)·Bᵀ, two GEMMs.
class LowRankLinear {
 public:
  LowRankLinear() = default;
  LowRankLinear(int64_t out, int64_t in, int64_t rank, std::vector<float> b, std::vector<float> a);
  static LowRankLinear from_svd(const Svd<float>& svd);
  void apply(const float* x, int64_t n, float* y) const;
  std::vector<float> dense() const;  // B·A [out, in]
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  int64_t rank() const { return rank_; }
  double flops(int64_t n) const { return 2.0 * double(n) * double(rank_) * double(in_ + out_); }

 private:
  int64_t out_ = 0, in_ = 0, rank_ = 0;
  std::vector<float> b_, a_;
};

// A linear layer whose weight (out = Π o_k, in = Π i_k) is a Tucker or CP factorization of the
// tensor with modes (o_1 … o_d, i_1 … i_d), or a matrix product operator (tensor train over the
// merged modes (o_k i_k)): y = x·Wᵀ is contracted factor by factor, never forming W. A small cost
// model picks the contraction order — for Tucker, the order of the input-mode contractions and of
// the output-mode expansions (every permutation is costed, d <= 6); for the MPO, a left-to-right
// or right-to-left sweep. CP layers run as x·KR_inᵀ·diag(λ)·KR_out (Khatri-Rao products formed at
// construction: a rank-R low-rank product). flops() reports the chosen order's cost.
class FactoredLinear {
 public:
  static FactoredLinear from_tucker(const Tucker<float>& t, const std::vector<int64_t>& out_modes,
                                    const std::vector<int64_t>& in_modes);
  static FactoredLinear from_cp(const Cp<float>& cp, const std::vector<int64_t>& out_modes,
                                const std::vector<int64_t>& in_modes);
  static FactoredLinear from_mpo(const TensorTrain<float>& tt, const std::vector<int64_t>& out_modes,
                                 const std::vector<int64_t>& in_modes);
  void apply(const float* x, int64_t n, float* y) const;
  double flops(int64_t n) const { return flops_per_row_ * double(n); }
  double dense_flops(int64_t n) const { return 2.0 * double(n) * double(out_) * double(in_); }
  const std::string& plan() const { return plan_; }  // the chosen order, readable
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }

 private:
  enum class Kind { Tucker, Cp, Mpo };
  static FactoredLinear with_modes(Kind kind, const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes);
  Kind kind_ = Kind::Tucker;
  int64_t out_ = 0, in_ = 0;
  std::vector<int64_t> out_modes_, in_modes_, ranks_;
  std::vector<std::vector<float>> factors_;  // Tucker: 2d factors; CP: KR_in, KR_out; MPO: cores
  std::vector<float> core_;                  // Tucker core; CP: λ
  std::vector<int> in_order_, out_order_;    // Tucker contraction orders
  bool reverse_ = false;                     // MPO: right-to-left sweep
  double flops_per_row_ = 0;
  std::string plan_;
};

// ------------------------------------------------------------------------------ adapters
struct LoraAdapter {
  int64_t rank = 0;
  float alpha = 0;         // scale s = alpha / rank (rsLoRA: alpha / sqrt(rank))
  std::vector<float> a;    // [rank, in]
  std::vector<float> b;    // [out, rank]
  bool rslora = false;
  std::vector<float> magnitude;  // DoRA (PEFT use_dora): m [out], W' = m ⊙ (W + s·B·A) / ‖row‖; empty: plain LoRA
  float scale() const { return rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank); }
};

// y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, unmerged (W untouched).
void lora_apply(const float* w, int64_t out, int64_t in, const LoraAdapter& ad, const float* x, int64_t n, float* y);
// The same on a low-bit frozen base (QLoRA-style): the base product runs the LUT / int8 mpGEMM
// kernels on the packed weights (mpgemm.h), the adapter in f32.
void lora_apply(const LutWeights& w, const LoraAdapter& ad, const float* x, int64_t n, float* y);
// W += s·B·A, and back. ΔW = s·B·A is formed the same way both times, so unmerge(merge(W)) equals
// W up to the f32 rounding of W + ΔW: |W'' − W| <= 2^-24·(|W| + |ΔW|) per element.
void lora_merge(float* w, int64_t out, int64_t in, const LoraAdapter& ad);
void lora_unmerge(float* w, int64_t out, int64_t in, const LoraAdapter& ad);

// DoRA: W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ with the norm per output row and magnitude m [out]
// (initialized to the row norms of W, so a zero B leaves W unchanged).
struct DoraAdapter {
  LoraAdapter lora;
  std::vector<float> magnitude;  // [out]
  static DoraAdapter init(const float* w, int64_t out, int64_t in, LoraAdapter lora);
};
void dora_apply(const float* w, int64_t out, int64_t in, const DoraAdapter& ad, const float* x, int64_t n, float* y);
std::vector<float> dora_merged(const float* w, int64_t out, int64_t in, const DoraAdapter& ad);

// Block-LoRA: the input split into `blocks` equal blocks sharing one down-projection A [r, in/blocks]
// with a per-block B_j [out, r]: ΔW = s·[B_1 A | B_2 A | …]. Parameters r·(in/blocks + blocks·out).
struct BlockLoraAdapter {
  int64_t rank = 0, blocks = 1;
  float alpha = 0;
  std::vector<float> a;                // [rank, in / blocks]
  std::vector<std::vector<float>> b;   // blocks x [out, rank]
  float scale() const { return alpha / float(rank); }
};
void block_lora_apply(const float* w, int64_t out, int64_t in, const BlockLoraAdapter& ad, const float* x, int64_t n,
                      float* y);
std::vector<float> block_lora_delta(int64_t out, int64_t in, const BlockLoraAdapter& ad);  // ΔW

// Tucker-core adapters for N-D weights (FLoRA) and CP-LoRA: ΔW of a weight tensor with the given
// shape is s·(core ×_k U_k) (Tucker) or s·Σ_r λ_r ∘_k u_k,r (CP); returned flattened, added to the
// weight on merge and subtracted on unmerge like LoRA.
std::vector<float> flora_delta(const Tucker<float>& t, float scale);
std::vector<float> cp_lora_delta(const Cp<float>& cp, float scale);

// Many LoRA adapters on one base layer, each batch row naming its adapter (S-LoRA / Punica BGMV).
// Ranks may differ. apply() adds every row's adapter contribution in one fused kernel: rows are
// grouped by adapter, each adapter's A and B are read once, the shrink (x·Aᵀ) and expand (·Bᵀ) run
// as gathered GEMV/GEMM tasks over the pool. apply_loop() is the baseline it is measured against:
// a loop over the adapters present (gather their rows, two GEMMs, scatter-add).
// storage = BF16 keeps A and B as bf16 (rounded on add; PEFT adapters are commonly shipped in
// bf16/f16): the fused kernel then reads half the bytes — the batch is bound by reading every
// adapter once — and widens on load, accumulating in f32. apply_loop uses the same rounded values
// in f32 (OpenBLAS has no bf16 GEMM).
class AdapterBank {
 public:
  AdapterBank(int64_t out, int64_t in, DType storage = DType::F32);
  int32_t add(const LoraAdapter& ad);  // returns its id
  // Frees adapter `id`'s weights (the others keep their ids); a row naming it is then an error.
  void remove(int32_t id);
  int64_t size() const { return int64_t(adapters_.size()); }  // ids handed out, removed ones included
  // y[t] += s_i·(x[t]·A_iᵀ)·B_iᵀ with i = ids[t] (ids[t] < 0: no adapter).
  void apply(const float* x, int64_t n, const int32_t* ids, float* y) const;
  // y = x·Ŵᵀ (low-bit base through mpGEMM) plus every row's adapter, as one call.
  void apply_with_base(const LutWeights& base, const float* x, int64_t n, const int32_t* ids, float* y) const;
  void apply_loop(const float* x, int64_t n, const int32_t* ids, float* y) const;
  const char* kernel() const;

 private:
  std::vector<bool> live() const {
    std::vector<bool> v(adapters_.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = adapters_[i].rank > 0;
    return v;
  }
  struct Entry {
    int64_t rank;
    float scale;
    // The kernel's weights, in the bank's arena (w32_ or w16_, by storage): A [rank, in] at a_off,
    // Bᵀ [rank, out] (rows of the expand) at bt_off.
    int64_t a_off, bt_off;
    std::vector<float> a;   // BF16 storage: A [rank, in] widened back to f32, for the baseline loop
    std::vector<float> b;   // [out, rank] for the baseline loop
  };
  int64_t out_, in_;
  DType storage_;
  std::vector<Entry> adapters_;
  // Every adapter's kernel weights in one huge-page buffer: a batch reads all of them (8–17 MB for
  // 32 rank-16 adapters on 4096², more than the 4 KB-page TLB reach). Measured against one vector
  // per adapter, 64 rows, one thread: bf16 0.40 → 0.37 ms, f32 0.69 → 0.65 ms.
  LargeVector<float> w32_;
  LargeVector<uint16_t> w16_;
};

// PEFT layout: adapter_model.safetensors with "<prefix><module>.lora_A.weight" [r, in] and
// ".lora_B.weight" [out, r] tensors (f32, f16 or bf16), adapter_config.json with r, lora_alpha and
// target_modules. Modules are keyed by their path without the "base_model.model." prefix.
// Every option that changes what the adapter computes is honoured or refused by name, never
// ignored: use_rslora (α/√r), use_dora ("<module>.lora_magnitude_vector" [out]), rank_pattern /
// alpha_pattern (per-module r and α, keys matched as PEFT does: "(.*\.)?KEY$"), embedding LoRA
// ("<module>.lora_embedding_A" [r, vocab], "_B" [dim, r]), modules_to_save and saved embedding
// layers ("<module>.weight": the module's whole new weight), fan_in_fan_out (PEFT turns it off
// for Linear layers; so does this reader, with PEFT's warning). Trained biases, lora_bias,
// layer_replication, target_parameters, trainable_token_indices, aLoRA and any unknown field or
// tensor are errors naming them.
struct PeftAdapter {
  int64_t r = 0;
  double lora_alpha = 0;
  bool use_rslora = false, use_dora = false;
  std::vector<std::string> target_modules;
  bool target_regex = false;     // target_modules was one string: PEFT's regex (or "all-linear")
  std::map<std::string, int64_t> rank_pattern;
  std::map<std::string, double> alpha_pattern;
  std::vector<std::string> modules_to_save;
  std::map<std::string, LoraAdapter> modules;     // linear layers (lm_head included)
  std::map<std::string, LoraAdapter> embeddings;  // embedding LoRA: a [r, vocab], b [dim, r]
  std::map<std::string, Tensor> saved;            // modules_to_save / saved embeddings: the whole f32 weight
  // r and α of `module`: its rank_pattern / alpha_pattern entry (PEFT's get_pattern_key), else r / lora_alpha.
  int64_t rank_for(const std::string& module) const;
  double alpha_for(const std::string& module) const;
};
// Refuses tensors that disagree with the config (a module's rank other than r, a module not in
// target_modules) and warns (log hook) about a target module with no tensors.
PeftAdapter read_peft_adapter(const std::string& dir);
// PEFT's module match: `module` is `key` or ends with "." + key (target_modules, modules_to_save).
bool peft_module_is(const std::string& module, const std::string& key);
// The adapter_config.json part alone (r, lora_alpha, target_modules; no modules); `label` names the
// source in errors.
PeftAdapter parse_peft_config(const std::string& json_text, const std::string& label);
// Writes both files atomically (temp file, then rename), f32 tensors.
void write_peft_adapter(const std::string& dir, const PeftAdapter& adapter);

}  // namespace tz
