// LlamaConfig / LlamaSource checks, weight formats, Linear (format dispatch) and LlamaModel.
#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/decompose.h"
#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"

namespace tz {

namespace {

// Index of the first NaN / Inf in x[0..n), or -1; chunks on the pool for large tensors.
int64_t first_non_finite(const float* x, int64_t n) {
  constexpr int64_t kChunk = int64_t(1) << 20;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int64_t> first(size_t(std::max<int64_t>(chunks, 1)), -1);
  const auto scan = [&](int64_t c, int) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    // NaN and Inf are the values whose exponent bits are all ones: an integer OR-reduction the
    // compiler vectorizes (a float sum would not be, without reassociation).
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(x);
    uint32_t any = 0;
    for (int64_t i = c * kChunk; i < end; ++i) any |= uint32_t((bits[i] & 0x7f800000u) == 0x7f800000u);
    if (any == 0) return;
    for (int64_t i = c * kChunk; i < end; ++i)
      if (!std::isfinite(x[i])) {
        first[size_t(c)] = i;
        return;
      }
  };
  if (chunks > 1) parallel_for(chunks, scan);
  else if (chunks == 1) scan(0, 0);
  for (int64_t f : first)
    if (f >= 0) return f;
  return -1;
}

}  // namespace

void LlamaConfig::validate(const std::string& label) const {
  const auto bad = [&](const std::string& what) { throw Error(label + ": invalid LLaMA config: " + what); };
  for (auto [v, n] : {std::pair{dim, "dim"}, {hidden_dim, "hidden_dim"}, {n_layers, "n_layers"}, {n_heads, "n_heads"},
                      {n_kv_heads, "n_kv_heads"}, {vocab_size, "vocab_size"}, {seq_len, "seq_len"}})
    if (v <= 0) bad(std::string(n) + " = " + std::to_string(v));
  if (head_dim < 0 || head_dim > (1 << 16)) bad("head_dim = " + std::to_string(head_dim));
  if (head_dim == 0 && dim % n_heads != 0) bad("dim " + std::to_string(dim) + " is not a multiple of n_heads " + std::to_string(n_heads));
  if (sliding_window < 0) bad("sliding_window = " + std::to_string(sliding_window));
  for (auto [v, n] : {std::pair{embed_scale, "embed_scale"}, {attn_softcap, "attn_softcap"}, {final_softcap, "final_softcap"},
                      {attn_scale, "attn_scale"}})
    if (!std::isfinite(v) || v < 0.f) bad(std::string(n) + " = " + std::to_string(v) + " (must be finite and >= 0)");
  if (n_heads % n_kv_heads != 0) bad("n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " + std::to_string(n_kv_heads));
  if (head_size() % 2 != 0) bad("head size " + std::to_string(head_size()) + " is odd (rotary embeddings need pairs)");
  if (!(norm_eps > 0.f) || !std::isfinite(norm_eps)) bad("norm_eps = " + std::to_string(norm_eps) + " (must be positive and finite)");
  if (!(rope_theta > 0.f) || !std::isfinite(rope_theta)) bad("rope_theta = " + std::to_string(rope_theta) + " (must be positive and finite)");
  if (!(rope_freq_scale > 0.f) || !std::isfinite(rope_freq_scale))
    bad("rope_freq_scale = " + std::to_string(rope_freq_scale) + " (must be positive and finite)");
}

bool is_llama_architecture(const std::string& arch) {  // a name in kLlamaArchitectures
  const std::string_view all = kLlamaArchitectures;
  for (size_t p = 0; p <= all.size();) {
    const size_t e = std::min(all.find(", ", p), all.size());
    if (all.substr(p, e - p) == arch) return true;
    p = e + 2;
  }
  return false;
}

bool LlamaConfig::plain_llama() const {
  return arch == "llama" && head_dim == 0 && rope_style == RopeStyle::Adjacent && pre_norms && !post_norms && !qkv_bias && !qk_norm &&
         ffn_act == FfnActivation::SiLU && embed_scale == 1.f && attn_softcap == 0.f && final_softcap == 0.f && attn_scale == 0.f &&
         sliding_window == 0;
}

std::string LlamaConfig::to_string() const {
  return (arch == "llama" ? std::string() : "arch=" + arch + " ") + "dim=" + std::to_string(dim) + " hidden=" + std::to_string(hidden_dim) + " layers=" + std::to_string(n_layers) +
         " heads=" + std::to_string(n_heads) + " kv_heads=" + std::to_string(n_kv_heads) + " vocab=" + std::to_string(vocab_size) +
         " seq_len=" + std::to_string(seq_len);
}

const Tensor& LlamaSource::get(const std::string& name) const {
  auto it = tensors.find(name);
  require(it != tensors.end(), label + ": missing tensor '" + name + "'");
  return it->second;
}

Tensor LlamaSource::dense(const std::string& name) const {
  auto q = quantized.find(name);
  if (q == quantized.end()) return get(name);
  Tensor t = Tensor::empty(DType::F32, {q->second.rows(), q->second.cols()});
  q->second.dequantize(t.data<float>());
  return t;
}

void LlamaSource::densify_blocks() {
  for (auto it = quantized.begin(); it != quantized.end();) {
    if (it->second.ggml) {
      tensors[it->first] = dense(it->first);
      it = quantized.erase(it);
    } else {
      ++it;
    }
  }
}

void LlamaSource::validate() const {
  cfg.validate(label);
  const int64_t D = cfg.dim, H = cfg.hidden_dim, KV = cfg.kv_dim(), V = cfg.vocab_size, Q = cfg.q_dim();
  const auto check = [&](const std::string& name, Shape shape) {
    if (auto q = quantized.find(name); q != quantized.end()) {
      require(Shape{q->second.rows(), q->second.cols()} == shape,
              label + ": tensor '" + name + "' has shape " + shape_to_string({q->second.rows(), q->second.cols()}) +
                  ", the config needs " + shape_to_string(shape));
      return;
    }
    const Tensor& t = get(name);
    require(t.dtype() == DType::F32, label + ": tensor '" + name + "' is " + dtype_name(t.dtype()) + ", expected f32");
    require(t.shape() == shape, label + ": tensor '" + name + "' has shape " + shape_to_string(t.shape()) + ", the config needs " +
                                    shape_to_string(shape));
    require(t.is_contiguous(), label + ": tensor '" + name + "' is not contiguous");
  };
  check("tok_embeddings", {V, D});
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    if (cfg.pre_norms) {
      check(p + "attention_norm", {D});
      check(p + "ffn_norm", {D});
    }
    if (cfg.post_norms) {
      check(p + "post_attention_norm", {D});
      check(p + "post_ffn_norm", {D});
    }
    if (cfg.qkv_bias) {
      check(p + "attention.bq", {Q});
      check(p + "attention.bk", {KV});
      check(p + "attention.bv", {KV});
    }
    if (cfg.qk_norm) {
      const int64_t hs = cfg.head_size();
      check(p + "attention.q_norm", {cfg.qk_norm_per_head ? hs : Q});
      check(p + "attention.k_norm", {cfg.qk_norm_per_head ? hs : KV});
    }
    check(p + "attention.wq", {Q, D});
    check(p + "attention.wk", {KV, D});
    check(p + "attention.wv", {KV, D});
    check(p + "attention.wo", {D, Q});
    check(p + "feed_forward.w1", {H, D});
    check(p + "feed_forward.w2", {D, H});
    check(p + "feed_forward.w3", {H, D});
  }
  check("norm", {D});
  if (!tied()) check("output", {V, D});
  if (has("rope_freqs")) check("rope_freqs", {cfg.head_size() / 2});
  // A NaN or Inf weight (even in an embedding row no prompt uses) is refused here, by name, rather
  // than turning into NaN logits, a NaN perplexity or a compressed copy of it.
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::F32 || !t.is_contiguous()) continue;
    if (const int64_t bad = first_non_finite(t.data<float>(), t.numel()); bad >= 0)
      throw Error(label + ": tensor '" + name + "' holds a non-finite value (" + std::to_string(t.data<float>()[bad]) +
                  ") at flat index " + std::to_string(bad));
  }
  for (const auto& [name, c] : quantized) {
    if (const int64_t bad = first_non_finite(c.q.scales.data(), int64_t(c.q.scales.size())); bad >= 0)
      throw Error(label + ": tensor '" + name + "' has a non-finite scale at group " + std::to_string(bad));
  }
}

// ------------------------------------------------------------------ formats

WeightFormat WeightFormat::parse(const std::string& s) {
  WeightFormat f;
  const auto bad = [&] {
    throw Error("weight format '" + s + "' not understood (native, f32, bf16, q1..q8 with optional gG group and 'a' for asymmetric, e.g. q4, q4g32, q3g64a; t = ternary; lrR = rank-R low-rank)");
  };
  if (s == "f32") return f;
  if (s == "native") {
    f.kind = Kind::Native;
    return f;
  }
  if (s.size() > 2 && s.compare(0, 2, "lr") == 0) {
    f.kind = Kind::LowRank;
    const std::string digits = s.substr(2);
    if (digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) bad();
    f.rank = std::stoi(digits);
    if (f.rank < 1) bad();
    return f;
  }
  if (s == "bf16") {
    f.kind = Kind::BF16;
    return f;
  }
  f.kind = Kind::Quant;
  f.quant = QuantFormat{};
  f.quant.scale_dtype = DType::F16;  // as llama.cpp's formats: half the scale overhead of f32
  if (s == "t" || s == "ternary") {
    f.quant.bits = 2;
    f.quant.ternary = true;
    f.quant.group = 0;
    return f;
  }
  if (s.size() < 2 || s[0] != 'q' || s[1] < '1' || s[1] > '8') bad();
  f.quant.bits = s[1] - '0';
  size_t i = 2;
  if (i < s.size() && s[i] == 'g') {
    size_t j = i + 1;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i + 1 || j - i > 6) bad();
    f.quant.group = std::stoi(s.substr(i + 1, j - i - 1));
    if (f.quant.group % 32 != 0) throw Error("weight format '" + s + "': the group must be a multiple of 32 (or 0 for whole rows)");
    i = j;
  }
  if (i < s.size() && s[i] == 'a') {
    f.quant.symmetric = false;
    ++i;
  }
  if (i != s.size()) bad();
  return f;
}

std::string WeightFormat::to_string() const {
  switch (kind) {
    case Kind::F32: return "f32";
    case Kind::BF16: return "bf16";
    case Kind::Native: return "native";
    case Kind::LowRank: return "lr" + std::to_string(rank);
    case Kind::Quant: return quant.spec();
  }
  return "?";
}

double WeightFormat::bits_per_weight(int64_t cols) const {
  switch (kind) {
    case Kind::F32:
    case Kind::Native: return 32;
    case Kind::BF16: return 16;
    case Kind::LowRank: return 0;  // depends on both dimensions: see Linear::bytes()
    case Kind::Quant: {
      const double g = double(quant.group_size(cols));
      const double sb = quant.scale_dtype == DType::F16 ? 16 : 32;
      return quant.bits + (sb + (quant.symmetric || quant.ternary ? 0 : sb)) / g;
    }
  }
  return 0;
}

FormatSpec::FormatSpec(const std::string& spec) : text_(spec) {
  size_t start = 0;
  bool have_default = false;
  while (start <= spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(start, end - start);
    require(!item.empty(), "weight format spec '" + spec + "': empty item");
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      require(!have_default, "weight format spec '" + spec + "': more than one default format");
      def_ = WeightFormat::parse(item);
      have_default = true;
    } else {
      rules_.emplace_back(item.substr(0, eq), WeightFormat::parse(item.substr(eq + 1)));
    }
    start = end + 1;
  }
}

WeightFormat FormatSpec::for_tensor(const std::string& name) const {
  for (const auto& [glob, f] : rules_)
    if (fnmatch(glob.c_str(), name.c_str(), 0) == 0) return f;
  return def_;
}

// ------------------------------------------------------------------ Linear

namespace {

// Round-to-nearest quantization, rows split across the pool (the reference is per row).
QuantMatrix quantize_rows_parallel(const float* w, int64_t rows, int64_t cols, const QuantFormat& fmt) {
  fmt.validate(rows, cols);
  const int64_t chunks = std::min<int64_t>(rows, int64_t(num_threads()) * 4);
  std::vector<QuantMatrix> parts(size_t(std::max<int64_t>(chunks, 1)));
  parallel_for(chunks, [&](int64_t c, int) {
    const Range r = split_range(rows, chunks, c);
    parts[size_t(c)] = quantize_rtn_ref(w + r.begin * cols, r.end - r.begin, cols, fmt);
  });
  if (chunks <= 1) return chunks == 1 ? std::move(parts[0]) : quantize_rtn_ref(w, rows, cols, fmt);
  QuantMatrix q = std::move(parts[0]);
  q.rows = rows;
  for (size_t c = 1; c < parts.size(); ++c) {
    q.codes.insert(q.codes.end(), parts[c].codes.begin(), parts[c].codes.end());
    q.scales.insert(q.scales.end(), parts[c].scales.begin(), parts[c].scales.end());
    q.zeros.insert(q.zeros.end(), parts[c].zeros.begin(), parts[c].zeros.end());
  }
  return q;
}

std::vector<uint16_t>& bf16_scratch(size_t n) {
  thread_local std::vector<uint16_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

}  // namespace

Linear Linear::build(const Tensor& w, const WeightFormat& fmt) {
  require(w.dtype() == DType::F32 && w.ndim() == 2 && w.is_contiguous(), "Linear: weights must be a contiguous f32 matrix");
  Linear l;
  l.fmt_ = fmt;
  l.out_ = w.dim(0);
  l.in_ = w.dim(1);
  switch (fmt.kind) {
    case WeightFormat::Kind::F32:
    case WeightFormat::Kind::Native: l.fmt_.kind = WeightFormat::Kind::F32; l.f32_ = w; break;
    case WeightFormat::Kind::BF16: l.bf16_ = pack_bf16_weights_f32(w.data<float>(), l.out_, l.in_, l.in_); break;
    case WeightFormat::Kind::Quant:
      l.lut_ = std::make_shared<LutWeights>(LutWeights::pack(quantize_rows_parallel(w.data<float>(), l.out_, l.in_, fmt.quant)));
      break;
    case WeightFormat::Kind::LowRank: {
      // W ≈ (U·S)·Vᵀ of rank r (randomized SVD, 4 power iterations): y = (U·S)·(Vᵀ·x).
      const int64_t r = std::min<int64_t>(fmt.rank, std::min(l.out_, l.in_));
      const auto svd = svd_randomized(w.data<float>(), l.out_, l.in_, RankSpec::of_rank(r));
      std::vector<float> L(size_t(l.out_ * svd.rank));
      for (int64_t i = 0; i < l.out_; ++i)
        for (int64_t j = 0; j < svd.rank; ++j) L[size_t(i * svd.rank + j)] = svd.u[size_t(i * svd.rank + j)] * svd.s[size_t(j)];
      l.add_lowrank(L, svd.vt, svd.rank);
      break;
    }
  }
  return l;
}

Linear Linear::from_compressed(const CompressedLinear& c) {
  Linear l;
  if (c.ggml) {  // llama.cpp's blocks as they are
    l.fmt_.kind = WeightFormat::Kind::Native;
    l.out_ = c.rows();
    l.in_ = c.cols();
    l.ggml_ = c.ggml;
    return l;
  }
  l.fmt_.kind = WeightFormat::Kind::Quant;
  l.fmt_.quant = c.q.fmt;
  l.out_ = c.rows();
  l.in_ = c.cols();
  l.lut_ = std::make_shared<LutWeights>(LutWeights::pack(c.q));
  require(c.input_perm.empty() || (c.input_scale.empty() && c.outlier_cols.empty() && int64_t(c.input_perm.size()) == c.cols()),
          "Linear: an input permutation needs one entry per input and no input scales or outliers");
  if (!c.input_scale.empty() || !c.outlier_cols.empty() || !c.input_perm.empty()) {
    auto e = std::make_shared<Extras>();
    for (float v : c.input_scale) e->inv_scale.push_back(1.f / v);
    e->perm = c.input_perm;
    e->outlier_cols = c.outlier_cols;
    e->outlier_w = c.outlier_w;
    e->bytes = c.input_scale.size() * 4 + c.input_perm.size() * 4 + c.outlier_cols.size() * 4 + c.outlier_w.size() * 2;
    l.extras_ = std::move(e);
  }
  if (c.rank > 0) l.add_lowrank(c.lora_l, c.lora_r, c.rank);
  return l;
}

Linear Linear::from_source(const LlamaSource& src, const std::string& name, const WeightFormat& fmt) {
  auto q = src.quantized.find(name);
  if (q != src.quantized.end() && fmt.kind == WeightFormat::Kind::Native) return from_compressed(q->second);
  return build(src.dense(name), fmt);
}

void Linear::add_lowrank(const std::vector<float>& l, const std::vector<float>& r, int64_t rank) {
  require(rank > 0 && int64_t(l.size()) == out_ * rank && int64_t(r.size()) == rank * in_,
          "Linear: low-rank branch must be L [" + std::to_string(out_) + ", r] and R [r, " + std::to_string(in_) + "]");
  auto e = extras_ ? std::make_shared<Extras>(*extras_) : std::make_shared<Extras>();
  // Concatenate with an existing branch: [L | L2] · [R; R2].
  if (fmt_.kind == WeightFormat::Kind::Quant) {
    for (int64_t j = 0; j < rank; ++j)  // Lᵀ: append rows
      for (int64_t i = 0; i < out_; ++i) e->lt.push_back(l[size_t(i * rank + j)]);
  } else {
    std::vector<float> L(size_t(out_ * (e->rank + rank)));
    for (int64_t i = 0; i < out_; ++i) {
      std::copy_n(e->l.data() + i * e->rank, e->rank, &L[size_t(i * (e->rank + rank))]);
      std::copy_n(l.data() + i * rank, rank, &L[size_t(i * (e->rank + rank) + e->rank)]);
    }
    e->l = std::move(L);
  }
  e->r.insert(e->r.end(), r.begin(), r.end());
  e->rank += rank;
  e->bytes += (l.size() + r.size()) * 4;
  extras_ = std::move(e);
}

void Linear::forward(const float* x, int64_t n, float* y) const {
  thread_local std::vector<float> xs, t, u, h;
  switch (fmt_.kind) {
    case WeightFormat::Kind::F32:
    case WeightFormat::Kind::Native:
      if (ggml_) ggml_gemm(*ggml_, x, n, in_, y, out_);
      else gemm_f32(n, out_, in_, x, in_, f32_.data<float>(), in_, y, out_);
      break;
    case WeightFormat::Kind::BF16: {
      auto& xb = bf16_scratch(size_t(n * in_));
      f32_to_bf16(x, xb.data(), size_t(n * in_));
      gemm_bf16(n, xb.data(), in_, bf16_, y, out_);
      break;
    }
    case WeightFormat::Kind::LowRank: std::fill(y, y + n * out_, 0.f); break;  // all in the branch below
    case WeightFormat::Kind::Quant: {
      const Extras* e = extras_.get();
      const float* xq = x;
      if (e && !e->perm.empty()) {  // gather each row's inputs in Q's column order
        xs.resize(size_t(n * in_));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = 0; c < in_; ++c) xs[size_t(i * in_ + c)] = x[i * in_ + e->perm[size_t(c)]];
        xq = xs.data();
      } else if (e && (!e->inv_scale.empty() || !e->outlier_cols.empty())) {
        xs.assign(x, x + n * in_);
        for (int64_t i = 0; i < n; ++i) {
          float* row = &xs[size_t(i * in_)];
          if (!e->inv_scale.empty())
            for (int64_t c = 0; c < in_; ++c) row[c] *= e->inv_scale[size_t(c)];
          for (int32_t c : e->outlier_cols) row[c] = 0.f;
        }
        xq = xs.data();
      }
      LowRankEpilogue lr;
      if (e && e->rank > 0) {  // H = x·Rᵀ now; the kernel adds H·Lᵀ to its output tiles
        h.resize(size_t(n * e->rank));
        gemm_f32(n, e->rank, in_, x, in_, e->r.data(), in_, h.data(), e->rank);
        lr = {h.data(), e->rank, e->lt.data(), e->rank};
      }
      mpgemm(*lut_, xq, n, in_, y, out_, LutMode::Fast, MpGemmPath::Auto, &lr);
      const int64_t k = e ? int64_t(e->outlier_cols.size()) : 0;
      if (k > 0) {  // y += x[:, cols] · W_outᵀ
        t.resize(size_t(n * k));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < k; ++j) t[size_t(i * k + j)] = x[i * in_ + e->outlier_cols[size_t(j)]];
        for (int64_t i = 0; i < n; ++i)
          for (int64_t r = 0; r < out_; ++r) {
            const float* wr = &e->outlier_w[size_t(r * k)];
            float acc = 0;
            for (int64_t j = 0; j < k; ++j) acc += t[size_t(i * k + j)] * wr[j];
            y[i * out_ + r] += acc;
          }
      }
      break;
    }
  }
  if (extras_ && extras_->rank > 0 && fmt_.kind != WeightFormat::Kind::Quant) {  // y += (x · Rᵀ) · Lᵀ: adapters, the low-rank format
    const Extras& e = *extras_;
    t.resize(size_t(n * e.rank));
    u.resize(size_t(n * out_));
    gemm_f32(n, e.rank, in_, x, in_, e.r.data(), in_, t.data(), e.rank);
    gemm_f32(n, out_, e.rank, t.data(), e.rank, e.l.data(), e.rank, u.data(), out_);
    for (int64_t i = 0; i < n * out_; ++i) y[i] += u[size_t(i)];
  }
  if (out_scale_)  // DoRA: every output row times m / ‖W + ΔW‖
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out_; ++o) y[i * out_ + o] *= (*out_scale_)[size_t(o)];
}

void Linear::set_output_scale(std::vector<float> g) {
  require(int64_t(g.size()) == out_, "Linear: the output scale must have one value per output (" + std::to_string(out_) + ")");
  require(!out_scale_, "Linear: the layer already has an output scale (two DoRA adapters on one layer)");
  out_scale_ = std::make_shared<const std::vector<float>>(std::move(g));
}

size_t Linear::bytes() const {
  const size_t extra = (extras_ ? extras_->bytes : 0) + (out_scale_ ? out_scale_->size() * 4 : 0);
  switch (fmt_.kind) {
    case WeightFormat::Kind::F32:
    case WeightFormat::Kind::Native: return (ggml_ ? ggml_->bytes() : size_t(out_ * in_) * 4) + extra;
    case WeightFormat::Kind::BF16: return size_t(out_ * in_) * 2 + extra;
    case WeightFormat::Kind::LowRank: return extra;
    case WeightFormat::Kind::Quant: return lut_->bytes() + extra;
  }
  return 0;
}

// ------------------------------------------------------------------ LlamaModel

LlamaModel::LlamaModel(const LlamaSource& src, const FormatSpec& spec, const std::function<void(int, int)>& progress) {
  src.validate();
  cfg_ = src.cfg;
  const int total = cfg_.n_layers * 7 + 1;
  int done = 0;
  std::vector<std::string> names;
  const auto build = [&](const std::string& name, const std::string& source_name) {
    names.push_back(name);
    const WeightFormat fmt = spec.for_tensor(name);
    try {
      Linear l = Linear::from_source(src, source_name, fmt);
      if (progress) progress(++done, total);
      return l;
    } catch (const Error& e) {
      throw Error(src.label + ": tensor '" + source_name + "' as " + fmt.to_string() + ": " + e.what());
    } catch (const std::bad_alloc&) {
      throw Error(src.label + ": out of memory building tensor '" + source_name + "' as " + fmt.to_string());
    }
  };
  const auto vec = [&](const std::string& name, bool present = true) {
    if (!present) return std::vector<float>();
    const Tensor& t = src.get(name);
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  };
  if (auto e = src.quantized.find("tok_embeddings"); e != src.quantized.end() && e->second.ggml) embedding_blocks = e->second.ggml;
  else embedding = src.dense("tok_embeddings");
  rope_factors = vec("rope_freqs", src.has("rope_freqs"));
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Layer L;
    L.att_norm = vec(p + "attention_norm", cfg_.pre_norms);
    L.ffn_norm = vec(p + "ffn_norm", cfg_.pre_norms);
    L.post_att_norm = vec(p + "post_attention_norm", cfg_.post_norms);
    L.post_ffn_norm = vec(p + "post_ffn_norm", cfg_.post_norms);
    L.bq = vec(p + "attention.bq", cfg_.qkv_bias);
    L.bk = vec(p + "attention.bk", cfg_.qkv_bias);
    L.bv = vec(p + "attention.bv", cfg_.qkv_bias);
    L.q_norm = vec(p + "attention.q_norm", cfg_.qk_norm);
    L.k_norm = vec(p + "attention.k_norm", cfg_.qk_norm);
    L.wq = build(p + "attention.wq", p + "attention.wq");
    L.wk = build(p + "attention.wk", p + "attention.wk");
    L.wv = build(p + "attention.wv", p + "attention.wv");
    L.wo = build(p + "attention.wo", p + "attention.wo");
    L.w1 = build(p + "feed_forward.w1", p + "feed_forward.w1");
    L.w2 = build(p + "feed_forward.w2", p + "feed_forward.w2");
    L.w3 = build(p + "feed_forward.w3", p + "feed_forward.w3");
    layers.push_back(std::move(L));
  }
  final_norm = vec("norm");
  classifier = build("output", src.tied() ? "tok_embeddings" : "output");
  for (const auto& [glob, f] : spec.rules()) {  // an override that matches nothing is a typo, not a no-op
    bool any = false;
    for (const auto& n : names) any |= fnmatch(glob.c_str(), n.c_str(), 0) == 0;
    require(any, "weight format spec '" + spec.text() + "': '" + glob + "' matches no linear layer (names: layers.N.attention.wq|wk|wv|wo, layers.N.feed_forward.w1|w2|w3, output)");
  }
}

Linear* LlamaModel::linear(const std::string& name) {
  if (name == "output") return &classifier;
  int l = -1;
  char what[64] = {};
  if (std::sscanf(name.c_str(), "layers.%d.%63s", &l, what) != 2 || l < 0 || l >= cfg_.n_layers) return nullptr;
  Layer& L = layers[size_t(l)];
  const std::string w = what;
  if (w == "attention.wq") return &L.wq;
  if (w == "attention.wk") return &L.wk;
  if (w == "attention.wv") return &L.wv;
  if (w == "attention.wo") return &L.wo;
  if (w == "feed_forward.w1") return &L.w1;
  if (w == "feed_forward.w2") return &L.w2;
  if (w == "feed_forward.w3") return &L.w3;
  return nullptr;
}

size_t LlamaModel::linear_bytes() const {
  size_t b = classifier.bytes();
  for (const auto& L : layers)
    for (const Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) b += l->bytes();
  return b;
}

size_t LlamaModel::weight_bytes() const {
  size_t norms = (final_norm.size() + rope_factors.size()) * 4;
  for (const auto& L : layers)
    for (const auto* v : {&L.att_norm, &L.ffn_norm, &L.post_att_norm, &L.post_ffn_norm, &L.bq, &L.bk, &L.bv, &L.q_norm, &L.k_norm})
      norms += v->size() * 4;
  return linear_bytes() + norms + size_t(cfg_.dim) * 4;  // + one embedding row per token
}

std::string Linear::format_name() const { return ggml_ ? std::string("gguf ") + ggml_->type_name() : fmt_.to_string(); }

void LlamaModel::embed(int token, float* out) const {
  if (embedding_blocks) embedding_blocks->dequantize_row(token, out);
  else std::memcpy(out, embedding.data<float>() + int64_t(token) * cfg_.dim, size_t(cfg_.dim) * 4);
}

std::string LlamaModel::format_summary() const {
  std::map<std::string, int> count;
  for (const auto& L : layers)
    for (const Linear* l : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) ++count[l->format_name()];
  std::string s;
  for (const auto& [f, n] : count) s += (s.empty() ? "" : ", ") + std::to_string(n) + "x " + f;
  return s + ", classifier " + classifier.format_name();
}

}  // namespace tz
