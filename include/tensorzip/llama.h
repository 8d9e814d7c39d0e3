// LLaMA-architecture decoder models on tensorzip's weight formats: the loaders (llama2.c, GGUF,
// Hugging Face safetensors), the forward pass (RMSNorm, rotary embeddings, grouped-query attention
// with a KV cache, SwiGLU MLP, tied or separate classifier) and a sampler.
//
// Weights are loaded into a LlamaSource (f32 tensors in one canonical layout, Meta's names), then
// built into a LlamaModel where every linear layer is stored in the format a spec assigns to it:
// f32 (OpenBLAS), bf16 (AMX / AVX-512-BF16) or packed low-bit (the LUT mpGEMM, int8 tiles for
// prefill). A LlamaSession holds one sequence's KV cache and runs any number of tokens per call:
// many tokens (prefill, evaluation) go through the GEMM paths, one token (decode) through GEMV.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tensorzip/format.h"
#include "tensorzip/gemm.h"
#include "tensorzip/io/hf_quant.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/quantize.h"
#include "tensorzip/tensor.h"
#include "tensorzip/tokenizer.h"

namespace tz {
namespace io { class SafetensorsFile; }

// Rotary pairs: llama.cpp's NORM (adjacent values 2i, 2i+1: llama2.c, Meta, GGUF llama) or NEOX
// (the two halves of a head, i and i + head/2: GGUF qwen2, phi3, gemma2, olmo2).
enum class RopeStyle { Adjacent, HalfSplit };
enum class FfnActivation { SiLU, GeluTanh };  // SwiGLU (LLaMA) or GeGLU with tanh-approximate GELU (Gemma)

// The decoder architectures (GGUF general.architecture, tensorzip files): one decoder, switches below.
inline constexpr const char* kLlamaArchitectures = "llama, qwen2, qwen3, phi3, gemma2, olmo2";
bool is_llama_architecture(const std::string& arch);

struct LlamaConfig {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  float norm_eps = 1e-5f, rope_theta = 10000.f;
  float rope_freq_scale = 1.f;  // linear rope scaling: every angle times this (1 / rope_scaling factor)
  // Architecture switches: one decoder, these select its variants; the defaults are LLaMA's
  // (docs/runner.md, "Architectures").
  std::string arch = "llama";
  int head_dim = 0;                                // 0: dim / n_heads (gemma2 sets its own)
  RopeStyle rope_style = RopeStyle::Adjacent;
  bool pre_norms = true;                           // RMSNorm before attention and FFN (olmo2: none)
  bool post_norms = false;                         // RMSNorm of attention / FFN outputs before the residual (gemma2, olmo2)
  bool qkv_bias = false;                           // q/k/v projection biases (qwen2)
  bool qk_norm = false;                            // RMSNorm of the q and k projections (olmo2, qwen3)
  bool qk_norm_per_head = false;                   // … per head with one [head_size] weight (qwen3); else over the whole projection (olmo2)
  FfnActivation ffn_act = FfnActivation::SiLU;
  float embed_scale = 1.f;                         // embeddings times this (gemma2: sqrt(dim))
  float attn_softcap = 0.f, final_softcap = 0.f;   // cap·tanh(x / cap) on attention scores / logits; 0: off
  float attn_scale = 0.f;                          // q·k times this; 0: head_size^-1/2 (gemma2 27B: query_pre_attn_scalar^-1/2)
  int sliding_window = 0;                          // a query sees itself and the window − 1 keys before it; 0: off
  bool sliding_even_layers = false;                // window on layers 0, 2, 4… only (gemma2); else on all (phi3)
  int head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
  int q_dim() const { return head_size() * n_heads; }
  int kv_dim() const { return head_size() * n_kv_heads; }
  bool plain_llama() const;  // every switch at its default: what llama2.c / GGUF llama writers and the tuner take
  void validate(const std::string& label) const;  // throws tz::Error naming `label`
  std::string to_string() const;
};

// Weights as read from a file: f32 tensors, matrices [out, in] (y = W·x), names as Meta's:
//   tok_embeddings [vocab, dim]; layers.{i}.attention_norm [dim]; layers.{i}.attention.wq [dim, dim],
//   .wk / .wv [kv_dim, dim], .wo [dim, dim]; layers.{i}.ffn_norm [dim];
//   layers.{i}.feed_forward.w1 / .w3 [hidden, dim], .w2 [dim, hidden]; norm [dim];
//   output [vocab, dim] (absent when tied to tok_embeddings).
// With a q_dim (n_heads · head_size) other than dim, wq is [q_dim, dim] and wo [dim, q_dim].
// Architecture extras, present when the config's switch asks for them: layers.{i}.attention.bq
// [q_dim] / .bk / .bv [kv_dim] (qkv_bias); layers.{i}.attention.q_norm [q_dim] / .k_norm [kv_dim]
// (qk_norm); layers.{i}.post_attention_norm / .post_ffn_norm [dim] (post_norms); rope_freqs
// [head_size / 2] (optional: Llama-3.1 rope scaling, each pair's angle divided by its factor).
// attention_norm and ffn_norm are absent when pre_norms is off.
// Rotary embeddings rotate adjacent pairs (2i, 2i+1) of each head, as llama2.c and GGUF do;
// Hugging Face q/k weights are permuted back into that layout by their loader.
struct LlamaSource {
  LlamaConfig cfg;
  std::string label;  // file it came from
  std::map<std::string, Tensor> tensors;
  // Linear weights stored compressed in the file (GGUF q4_0 / q8_0, tensorzip files), kept as
  // codes: the "native" weight format runs them through the LUT kernels without dequantizing; any
  // other format dequantizes them first. A name is in `tensors` or here, not both.
  std::map<std::string, CompressedLinear> quantized;
  std::optional<Tokenizer> tokenizer;  // when the file carries one (GGUF, HF directory)
  std::string chat_template;           // GGUF tokenizer.chat_template / tokenizer_config.json, when present
  const Tensor& get(const std::string& name) const;
  Tensor dense(const std::string& name) const;  // f32, dequantized when the file stores it low-bit
  bool has(const std::string& name) const { return tensors.count(name) > 0 || quantized.count(name) > 0; }
  bool tied() const { return !has("output"); }
  // Moves every tensor kept as llama.cpp blocks (quantized[...].ggml) into `tensors` as f32: for
  // code that edits or re-quantizes weights.
  void densify_blocks();
  // Checks every tensor's presence, dtype (F32) and shape against cfg; names the file and tensor.
  void validate() const;
};

LlamaSource load_llama2c(const std::string& path);
LlamaSource load_gguf_llama(const std::string& path);
// A directory (or its config.json / model.safetensors) with config.json, model.safetensors and,
// when present, tokenizer.json. AutoAWQ (GEMM) and GPTQ checkpoints load with their codes kept:
// their layers are `quantized` entries (method "awq 4-bit g128", …) that the native format runs
// on the LUT kernels.
LlamaSource load_hf_llama(const std::string& path);
// A Hugging Face config.json (model_type llama, mistral, qwen2, phi3 or olmo2): every field type- and
// range-checked; the architecture's switches set as from GGUF.
struct HfConfig {
  LlamaConfig cfg;
  bool tie_word_embeddings = false;
  // quantization_config (or AutoGPTQ's quantize_config.json beside it): AutoAWQ GEMM / GPTQ
  // layers read with their codes unchanged (io/hf_quant.h).
  std::optional<io::HfQuantConfig> quant;
  std::vector<float> rope_factors;  // rope_scaling of type llama3: per-pair factors (the GGUF rope_freqs)
};
// Llama 3.1's rope_scaling (type llama3) as per-pair factors [head_size / 2], as llama.cpp's
// converter writes them into rope_freqs: 1 for wavelengths below original/high_freq_factor,
// `factor` above original/low_freq_factor, a smooth blend between.
std::vector<float> llama3_rope_factors(int head_size, float theta, float factor, float low_freq_factor, float high_freq_factor,
                                       int original_context);
HfConfig parse_hf_config(std::string_view text, const std::string& label);
// Picks the loader from the file's contents (GGUF magic, a directory / safetensors, else llama2.c).
LlamaSource load_llama(const std::string& path);
// Whether load_llama takes `path` as a model (false: a safetensors file without config.json beside
// it — a plain tensor collection of any architecture).
bool is_llama_model(const std::string& path);
// Writes a LlamaSource as a llama.cpp GGUF file (architecture "llama", Meta's rotary layout, the
// SentencePiece tokenizer as tokenizer.ggml.*): each matrix in the type type_of(its GGUF name)
// gives (f32, f16, bf16, or any type io::quantize_ggml writes: mixtures such as Q4_K_M), norms f32.
// A row length the type cannot hold falls back per tensor as llama-quantize does (Q2_K / Q3_K /
// IQ4_XS → IQ4_NL, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, TQ1_0 / TQ2_0 → Q4_0; then, or for the
// 32-value types, F16), reported. file_type: general.file_type (default: from blk.0.attn_q's
// requested type). A compressed layer whose codes fit the type's grid (4/5/8-bit codes in groups of
// whole blocks: GPTQ sym into q4_0 / q5_0 / q8_0, AWQ and asymmetric GPTQ into q4_1 / q5_1) is written
// with its codes as they are; every other tensor is re-quantized. Atomic: nothing is left at `path`
// on failure.
struct GgufTensorWritten {
  std::string name, requested, written;  // GGUF name; ggml type names
  int64_t values = 0;
  uint64_t bytes = 0;
  double rel_error = 0;  // ‖dequantized − source‖ / ‖source‖ (0 for f32)
  bool codes_kept = false;  // the source's codes written as they are (AWQ / GPTQ into q4_0 … q8_0), not re-quantized
};
struct GgufWriteReport {
  std::vector<GgufTensorWritten> tensors;
  int fallbacks = 0;
  double bits_per_weight = 0;  // the file's: every tensor's bytes × 8 / every tensor's values (llama.cpp's BPW)
};
using GgufTypeOf = std::function<uint32_t(const std::string& gguf_name)>;
GgufWriteReport write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path, uint32_t ggml_type);
GgufWriteReport write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path, const GgufTypeOf& type_of,
                                 uint32_t file_type = ~0u);
// What write_gguf_llama checks before it quantizes anything (the architecture, the tokenizer,
// every tensor's type): call it before long work whose result will be written as GGUF.
void check_gguf_llama_export(const LlamaSource& src, const Tokenizer* tok, const GgufTypeOf& type_of);
// The type a tensor of rows of `cols` values is written in when `requested` is asked for.
uint32_t gguf_fallback_type(uint32_t requested, int64_t cols);
// tensorzip files (docs/formats.md, "tensorzip model files"): a safetensors container holding the
// dense tensors as f32, each compressed linear layer as NAME.qweight (packed codes, U8 [rows,
// row bytes]), NAME.scales (F16/F32 [rows, groups]), NAME.zeros (U8, asymmetric), and when present
// NAME.input_scale, NAME.outlier_cols / NAME.outlier_weight, NAME.lora_l / NAME.lora_r; metadata
// with the format of every compressed tensor, the model config and the tokenizer (tensor
// "tokenizer.bin"), so the file runs on its own. Written atomically. `cfg.dim == 0` writes a plain
// tensor collection (any architecture; no config).
void write_tensorzip(const LlamaSource& src, const Tokenizer* tok, const std::string& path,
                     const std::map<std::string, std::string>& extra_metadata = {});
LlamaSource load_tensorzip(const std::string& path);  // validated when it carries a config
LlamaSource parse_tensorzip(const io::SafetensorsFile& f);
bool is_tensorzip_file(const std::string& path);

// The tokenizer for a model: the one inside the file if any, else `tokenizer.bin` beside it.
Tokenizer default_tokenizer(const LlamaSource& src, const std::string& model_path);

// A model with LLaMA-2-7B layer shapes and random weights (benchmarks; `--synthetic`).
LlamaSource synthetic_llama(const LlamaConfig& cfg, uint64_t seed = 1);
LlamaConfig llama2_7b_config(int n_layers);

// How one linear layer is stored.
struct WeightFormat {
  // Native: as the file stores it — low-bit GGUF weights through the LUT kernels, dense ones f32.
  // LowRank: W ≈ L·R of `rank` (randomized SVD), run as two GEMMs.
  enum class Kind { F32, BF16, Quant, Native, LowRank } kind = Kind::F32;
  QuantFormat quant;  // Kind::Quant
  int rank = 0;       // Kind::LowRank
  // "f32", "bf16", "q4" (4-bit symmetric, group 128, f16 scales), "q2g64", "q3g32a" (asymmetric), "t" (ternary,
  // one scale per row), "q8", "native", "lr64" (rank-64 low-rank). Throws tz::Error on anything else.
  static WeightFormat parse(const std::string& spec);
  std::string to_string() const;
  double bits_per_weight(int64_t cols) const;
};

// Format per tensor name: "q4" for every linear layer, or with overrides "q4,output=q8,layers.0.*=f32"
// (globs over the names above; the first match wins, the bare spec is the default).
class FormatSpec {
 public:
  FormatSpec(const std::string& spec = "f32");
  WeightFormat for_tensor(const std::string& name) const;
  const std::string& text() const { return text_; }
  const std::vector<std::pair<std::string, WeightFormat>>& rules() const { return rules_; }

 private:
  std::string text_;
  WeightFormat def_;
  std::vector<std::pair<std::string, WeightFormat>> rules_;
};

// y[n, out] = x[n, in] · Wᵀ in W's format.
class Linear {
 public:
  static Linear build(const Tensor& w, const WeightFormat& fmt);  // w f32 [out, in]
  static Linear from_compressed(const CompressedLinear& c);       // low-bit as given (LUT + extras)
  // Tensor `name` of `src` in `fmt` (Native keeps a quantized tensor's codes).
  static Linear from_source(const LlamaSource& src, const std::string& name, const WeightFormat& fmt);
  void forward(const float* x, int64_t n, float* y) const;
  // Adds y += L·(R·x) (L [out, rank], R [rank, in]) on top of whatever the layer computes: a LoRA
  // adapter kept unmerged (L = (α/r)·B, R = A); several branches concatenate.
  void add_lowrank(const std::vector<float>& l, const std::vector<float>& r, int64_t rank);
  int64_t lowrank_rank() const { return extras_ ? extras_->rank : 0; }
  // Multiplies output row o by g[o] after everything else (DoRA's m / ‖W + ΔW‖); once per layer.
  void set_output_scale(std::vector<float> g);
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  size_t bytes() const;
  const WeightFormat& format() const { return fmt_; }
  const GgmlMatrix* ggml_blocks() const { return ggml_.get(); }  // set when Native on llama.cpp blocks
  std::string format_name() const;  // format().to_string(), or "gguf TYPE" on llama.cpp blocks

 private:
  WeightFormat fmt_;
  int64_t out_ = 0, in_ = 0;
  Tensor f32_;
  PackedBf16Weights bf16_;
  std::shared_ptr<LutWeights> lut_;
  std::shared_ptr<const GgmlMatrix> ggml_;  // Native on llama.cpp blocks (ggml_gemm)
  // Extras of a compressed layer: y = Q·(x ⊘ s with outlier channels zeroed) + W_out·x_out + L·(R·x),
  // or y = Q·x[perm] + L·(R·x).
  struct Extras {
    std::vector<float> inv_scale;       // 1 / s, empty when none
    std::vector<int32_t> perm;          // Q reads x[perm] (act-order checkpoints); empty when none
    std::vector<int32_t> outlier_cols;
    std::vector<float> outlier_w;       // [out, k]
    int64_t rank = 0;
    // The branch y += (x·Rᵀ)·Lᵀ: R [rank, in]; L as [out, rank] (l) or, on low-bit layers, where the
    // LUT kernel adds it to its output tiles (LowRankEpilogue), as Lᵀ [rank, out] (lt).
    std::vector<float> l, lt, r;
    size_t bytes = 0;
  };
  std::shared_ptr<const Extras> extras_;
  std::shared_ptr<const std::vector<float>> out_scale_;
};

class LlamaModel {
 public:
  // Builds every linear layer in the format `spec` assigns it; progress(i, total) after each.
  LlamaModel(const LlamaSource& src, const FormatSpec& spec,
             const std::function<void(int, int)>& progress = nullptr);
  const LlamaConfig& config() const { return cfg_; }
  size_t weight_bytes() const;  // every weight the forward pass reads (embedding, norms, linears)
  // The linear layer of a canonical name (layers.3.attention.wq, output), or nullptr.
  Linear* linear(const std::string& name);
  // Attaches a PEFT LoRA adapter unmerged: every target module's layer gets y += s·B·(A·x) with
  // s = scale · α/r (α/√r under rsLoRA), whatever its weight format; DoRA then multiplies each
  // output row by m / ‖W + s·B·A‖ (W from `base`, the source this model was built from: DoRA
  // needs it). Embedding LoRA is merged into the embedding table (a lookup; the classifier of a
  // tied model keeps the original), saved modules (modules_to_save: lm_head, embed_tokens) replace
  // theirs. Hugging Face module names (model.layers.N.self_attn.q_proj, …, mlp.gate_proj, lm_head,
  // model.embed_tokens) map to Meta's, and q/k's rows are permuted from rotate-half order as their
  // weights are (adjacent-pair rotary models only); Meta names are taken as they are. Returns the
  // number of modules adapted; throws tz::Error (naming the module) on an unknown module or a shape
  // mismatch.
  int attach_lora(const PeftAdapter& adapter, float scale = 1.f, const LlamaSource* base = nullptr);
  size_t linear_bytes() const;  // the linear layers' packed weights
  std::string format_summary() const;

  struct Layer {
    std::vector<float> att_norm, ffn_norm;             // empty without pre-norms
    std::vector<float> post_att_norm, post_ffn_norm;   // post_norms
    std::vector<float> bq, bk, bv;                     // qkv_bias
    std::vector<float> q_norm, k_norm;                 // qk_norm
    Linear wq, wk, wv, wo, w1, w2, w3;
  };
  LlamaConfig cfg_;
  Tensor embedding;  // f32 [vocab, dim], or empty when the file's blocks are kept (embedding_blocks)
  std::shared_ptr<const GgmlMatrix> embedding_blocks;  // a quantized GGUF embedding, rows dequantized on lookup
  void embed(int token, float* out) const;             // row `token` of the embedding, f32 [dim]
  std::vector<Layer> layers;
  std::vector<float> final_norm;
  std::vector<float> rope_factors;  // [head_size / 2] or empty
  Linear classifier;
};

// The adapter merged into the source's weights (f32; llama.cpp blocks and compressed layers are
// dequantized first), with every option attach_lora honours: W += s·B·A, DoRA's row scaling,
// embedding LoRA, saved modules; a tied classifier that an adapter changes becomes its own
// `output` tensor. `scale` multiplies every s (llama.cpp's --lora-scaled).
void merge_lora(LlamaSource& src, const PeftAdapter& adapter, float scale = 1.f);

// Called with each linear layer's input rows (name as in LlamaSource, n rows of `in` floats).
using ActivationHook = std::function<void(const std::string& name, const float* x, int64_t n, int64_t in)>;

// One sequence's attention cache: K [layer][pos][kv_dim] and V transposed [layer][kv_dim][pos] for
// `cap` positions, grown (at least doubling, up to the session's max_seq) as positions are used.
struct KvCache {
  int cap = 0;
  std::vector<float> k, v;
  size_t bytes() const { return (k.size() + v.size()) * sizeof(float); }
};

// Many PEFT LoRA adapters on one model, each batch row through its own (S-LoRA): one AdapterBank
// per adapted linear layer, rows grouped by adapter inside the fused kernel. Module names map as
// attach_lora's (Hugging Face or Meta; q/k rows permuted for adjacent-pair rotary models).
class LlamaAdapterSet {
 public:
  explicit LlamaAdapterSet(const LlamaModel& model, DType storage = DType::F32);
  ~LlamaAdapterSet();
  // The adapter's id (0, 1, …). DoRA, embedding LoRA and saved modules change more than a low-rank
  // term per row and are refused by name (attach or merge them instead).
  int32_t add(const PeftAdapter& adapter, float scale = 1.f);
  // Frees adapter `id` (ids of the others stay); a row naming it is then an error. Not concurrent
  // with apply(): the caller pauses the batches (tensorzip serve's engine does).
  void remove(int32_t id);
  int32_t size() const { return count_; }  // ids handed out, removed ones included
  bool live(int32_t id) const { return id >= 0 && id < count_ && !removed_[size_t(id)]; }
  // The fused kernel (AdapterBank::apply, default) or its baseline, a loop over the adapters
  // present (apply_loop): benchmarks compare the two.
  void set_fused(bool fused) { fused_ = fused; }
  // y[t] += row t's adapter update of linear `which` (0..6: wq wk wv wo w1 w2 w3) of `layer`, or of
  // the classifier (layer = −1); ids[t] < 0: none.
  void apply(int layer, int which, const float* x, int64_t n, const int32_t* ids, float* y) const;

 private:
  struct Bank;
  const LlamaModel& m_;
  std::vector<std::unique_ptr<Bank>> banks_;  // [layer · 7 + which], the classifier's last
  DType storage_;
  int32_t count_ = 0;
  bool fused_ = true;
  std::vector<bool> removed_;
};

class LlamaSession {
 public:
  // max_seq bounds the positions (0: the model's seq_len); the KV cache is allocated as positions
  // are used, not up front, and an allocation larger than the free memory is a tz::Error.
  explicit LlamaSession(const LlamaModel& model, int max_seq = 0);
  // Runs tokens[0..n) at positions pos..pos+n-1 (the cache must hold 0..pos-1). Writes logits
  // [n, vocab] when all_logits, else only the last token's [vocab].
  void forward(const int* tokens, int n, int pos, float* logits, bool all_logits = false);
  // One step over many sequences (continuous batching): entry i runs tokens[0..n) at positions
  // pos..pos+n−1 in its own cache (which must hold 0..pos−1), its rows through adapter `adapter`
  // of `adapters` (−1: none), and writes its last token's logits [vocab]. Every linear layer is one
  // call over all entries' rows; attention runs per entry. An entry alone gives forward()'s logits.
  struct BatchEntry {
    KvCache* cache = nullptr;
    const int* tokens = nullptr;
    int n = 0, pos = 0;
    int32_t adapter = -1;
    float* logits = nullptr;
  };
  void forward_batch(const std::vector<BatchEntry>& batch, const LlamaAdapterSet* adapters = nullptr);
  // x [n, dim] in place through layer l alone (its KV cache at positions pos..pos+n-1): the
  // compressor streams calibration layer by layer with it.
  void run_layer(int l, float* x, int n, int pos);
  // The classifier's input rows: the final RMSNorm of x [n, dim].
  void head_input(const float* x, int n, float* out) const;
  int max_seq() const { return max_seq_; }
  int vocab_size() const { return m_.config().vocab_size; }
  void set_activation_hook(ActivationHook hook) { hook_ = std::move(hook); }
  size_t kv_cache_bytes() const { return own_.bytes(); }

 private:
  static constexpr int kInitialCapacity = 256;
  // A run of rows of x_ (row0 .. row0+n−1) that are one sequence's tokens at pos..pos+n−1.
  struct Segment {
    KvCache* kv;
    int pos, row0, n;
  };
  void reserve(KvCache& kv, int positions);  // the cache and the rotary tables for positions 0..positions-1
  void ensure_scratch(int n);
  void layer(int l, const std::vector<Segment>& segs, int n);  // x_'s n rows through layer l
  const LlamaModel& m_;
  int max_seq_, rope_cap_ = 0;
  KvCache own_;  // forward() / run_layer()'s sequence
  std::vector<float> rope_cos_, rope_sin_;  // [pos][head_size / 2]
  const LlamaAdapterSet* adapters_ = nullptr;  // during forward_batch
  std::vector<int32_t> row_adapter_;           // per row of x_, during forward_batch
  std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_;
  int scratch_n_ = 0;
  ActivationHook hook_;
};

// Perplexity. Sequences are either documents (BOS + text of each piece between separators,
// truncated to ctx tokens) or one whole text as a token stream scored with a sliding window of ctx
// tokens advancing by stride (each token scored once, with at least ctx - stride tokens of context
// after the first window).
std::vector<std::vector<int>> split_documents(const std::string& text, const Tokenizer& tok, const std::string& sep,
                                              int max_docs, int ctx);
struct PerplexityResult {
  double mean_nll = 0;       // nats per scored token
  double mean_nll_sq = 0;    // mean of the squared per-token NLL
  int64_t scored = 0;        // tokens whose probability was scored
  int64_t processed = 0;     // tokens run through the model (windows overlap)
  int64_t windows = 0;
  double forward_s = 0;      // time inside forward passes
  double perplexity() const;
  // llama-perplexity's ± : the standard error of the mean NLL (per-token NLLs taken as
  // independent) times the perplexity; 0 with fewer than 2 tokens.
  double perplexity_error() const;
};
// `progress` gets the windows done, their total and the result over the tokens scored so far.
// `first_scored`: the first token of each sequence whose probability counts (earlier ones are
// context only); llama-perplexity's chunks score their second half (ctx / 2 + 1).
PerplexityResult evaluate_perplexity(
    LlamaSession& s, const std::vector<std::vector<int>>& seqs, int ctx, int stride,
    const std::function<void(int64_t done, int64_t total, const PerplexityResult& so_far)>& progress = nullptr,
    int first_scored = 1);
// llama-perplexity's protocol: the text's tokens (BOS first) cut into chunks of ctx, each chunk's
// first token replaced by BOS; evaluate with first_scored = ctx / 2 + 1.
std::vector<std::vector<int>> perplexity_chunks(const std::vector<int>& tokens, int ctx, int bos);

// llama2.c's sampler: greedy at temperature 0, else softmax(logits / T) with top-p (nucleus)
// truncation when 0 < top_p < 1, drawn from llama2.c's xorshift generator (same seed, same draw).
class Sampler {
 public:
  Sampler(int vocab, float temperature, float top_p, uint64_t seed);
  // llama.cpp's other truncations, applied after the temperature and before top-p when set: keep
  // the k most likely tokens; drop tokens below min_p × the top probability. With neither set the
  // draw is llama2.c's exactly.
  void set_top_k(int k);
  void set_min_p(float p);
  int sample(float* logits);  // modifies logits

 private:
  float random_f32();
  int vocab_;
  float temp_, top_p_, min_p_ = 0.f;
  int top_k_ = 0;
  uint64_t state_;
  std::vector<std::pair<float, int>> probindex_;
};

}  // namespace tz
