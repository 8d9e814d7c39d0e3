// PEFT adapters on a LLaMA-family model: attached unmerged (LlamaModel::attach_lora) or merged
// into the source weights (merge_lora), with one mapping of module names and one arithmetic.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"

namespace tz {
namespace {

// A Hugging Face (or Meta) module name → the source tensor it adapts, and the heads whose rows
// Hugging Face keeps in rotate-half order (q, k of adjacent-pair rotary models; 0 otherwise).
struct Target {
  std::string name;
  int rotary_heads = 0;
};
Target target_of(const LlamaConfig& c, const std::string& module) {
  static const std::pair<const char*, const char*> hf[] = {
      {"self_attn.q_proj", "attention.wq"}, {"self_attn.k_proj", "attention.wk"}, {"self_attn.v_proj", "attention.wv"},
      {"self_attn.o_proj", "attention.wo"}, {"mlp.gate_proj", "feed_forward.w1"}, {"mlp.down_proj", "feed_forward.w2"},
      {"mlp.up_proj", "feed_forward.w3"}};
  if (module == "lm_head" || module == "output") return {"output", 0};
  int l = -1;
  char rest[64] = {};
  if (std::sscanf(module.c_str(), "model.layers.%d.%63s", &l, rest) == 2 && l >= 0 && l < c.n_layers) {
    const bool permuted = c.rope_style == RopeStyle::Adjacent;
    for (auto [h, m] : hf)
      if (std::string(rest) == h) {
        const int heads = std::string(h) == "self_attn.q_proj" ? c.n_heads : std::string(h) == "self_attn.k_proj" ? c.n_kv_heads : 0;
        return {"layers." + std::to_string(l) + "." + m, permuted ? heads : 0};
      }
  }
  if (std::sscanf(module.c_str(), "layers.%d.%63s", &l, rest) == 2 && l >= 0 && l < c.n_layers) return {module, 0};  // Meta names
  throw Error("LoRA adapter: module '" + module + "' is not a linear layer of this model");
}

// Meta row `row` of a [out, cols] matrix whose rows Hugging Face orders rotate-half per head.
int64_t hf_row(int64_t row, int64_t out, int heads) {
  if (heads == 0) return row;
  const int64_t hs = out / heads, h = row / hs, j = (row % hs) / 2, i = row % 2;
  return h * hs + i * hs / 2 + j;
}

// The module's update as L [out, r] = s·B (rows in Meta order) and R = A [r, in]; DoRA's
// magnitude in Meta order.
struct Update {
  std::vector<float> l, magnitude;
  const std::vector<float>* r;
  int64_t rank;
};
Update update_of(const LoraAdapter& lora, int64_t out, int64_t in, int heads, float scale, const std::string& module) {
  require(lora.rank > 0 && int64_t(lora.a.size()) == lora.rank * in && int64_t(lora.b.size()) == out * lora.rank,
          "LoRA adapter: module '" + module + "' has A/B shapes that do not fit the layer [" + std::to_string(out) + ", " +
              std::to_string(in) + "]");
  require(lora.magnitude.empty() || int64_t(lora.magnitude.size()) == out,
          "LoRA adapter: module '" + module + "': the DoRA magnitude has " + std::to_string(lora.magnitude.size()) + " values, the layer " +
              std::to_string(out) + " outputs");
  Update u{std::vector<float>(lora.b.size()), {}, &lora.a, lora.rank};
  const float s = scale * lora.scale();
  for (int64_t row = 0; row < out; ++row) {
    const int64_t src = hf_row(row, out, heads);
    for (int64_t k = 0; k < lora.rank; ++k) u.l[size_t(row * lora.rank + k)] = s * lora.b[size_t(src * lora.rank + k)];
    if (!lora.magnitude.empty()) u.magnitude.push_back(lora.magnitude[size_t(src)]);
  }
  return u;
}

// W + L·R, row by row into `out_w` (may be W), and DoRA's m / ‖W + L·R‖ per row when asked.
std::vector<float> add_update(const float* w, int64_t out, int64_t in, const Update& u, float* out_w) {
  std::vector<float> g;
  std::vector<double> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    double norm = 0;
    for (int64_t c = 0; c < in; ++c) {
      double v = w[o * in + c];
      for (int64_t k = 0; k < u.rank; ++k) v += double(u.l[size_t(o * u.rank + k)]) * (*u.r)[size_t(k * in + c)];
      row[size_t(c)] = v;
      norm += v * v;
    }
    if (out_w)
      for (int64_t c = 0; c < in; ++c) out_w[o * in + c] = float(row[size_t(c)]);
    if (!u.magnitude.empty()) g.push_back(norm > 0 ? float(u.magnitude[size_t(o)] / std::sqrt(norm)) : 0.f);
  }
  return g;
}

// E[v] += s·(B·A)ᵀ[v] for an embedding LoRA (A [r, vocab], B [dim, r]) on a [vocab, dim] table.
void add_embedding_update(Tensor& e, const LoraAdapter& lora, float scale, const std::string& module) {
  const int64_t vocab = e.dim(0), dim = e.dim(1), r = lora.rank;
  require(r > 0 && int64_t(lora.a.size()) == r * vocab && int64_t(lora.b.size()) == dim * r,
          "LoRA adapter: embedding '" + module + "' has A/B shapes that do not fit the table [" + std::to_string(vocab) + ", " +
              std::to_string(dim) + "] (A [r, vocab], B [dim, r])");
  const float s = scale * lora.scale();
  float* p = e.data<float>();
  for (int64_t v = 0; v < vocab; ++v)
    for (int64_t d = 0; d < dim; ++d) {
      double acc = 0;
      for (int64_t k = 0; k < r; ++k) acc += double(lora.b[size_t(d * r + k)]) * lora.a[size_t(k * vocab + v)];
      p[v * dim + d] += float(s * acc);
    }
}

void require_saved_shape(const Tensor& t, int64_t rows, int64_t cols, const std::string& module) {
  require(t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == cols, "LoRA adapter: saved module '" + module + "' is " +
                                                                     shape_to_string(t.shape()) + ", the model's [" + std::to_string(rows) +
                                                                     ", " + std::to_string(cols) + "]");
}

const char* kSavedModules = "lm_head, model.embed_tokens";

}  // namespace

int LlamaModel::attach_lora(const PeftAdapter& ad, float scale, const LlamaSource* base) {
  require(std::isfinite(scale), "LoRA adapter: the scale must be finite");
  int adapted = 0;
  for (const auto& [module, t] : ad.saved) {  // modules_to_save: the module as trained, whole
    if (peft_module_is(module, "lm_head")) {
      require_saved_shape(t, classifier.out(), classifier.in(), module);
      classifier = Linear::build(t.to(DType::F32).clone(), classifier.format());
    } else if (peft_module_is(module, "embed_tokens")) {
      require_saved_shape(t, cfg_.vocab_size, cfg_.dim, module);
      embedding = t.to(DType::F32).clone();
      embedding_blocks.reset();
    } else {
      throw Error("LoRA adapter: saved module '" + module + "' is not one tensorzip replaces (" + kSavedModules + ")");
    }
    ++adapted;
  }
  for (const auto& [module, lora] : ad.embeddings) {
    require(peft_module_is(module, "embed_tokens"), "LoRA adapter: embedding LoRA on '" + module + "', which is not the token embedding");
    if (embedding_blocks || embedding.numel() == 0) {  // the file's blocks, dequantized once to take the update
      Tensor e = Tensor::empty(DType::F32, {cfg_.vocab_size, cfg_.dim});
      for (int v = 0; v < cfg_.vocab_size; ++v) embed(v, e.data<float>() + int64_t(v) * cfg_.dim);
      embedding = e;
      embedding_blocks.reset();
    } else {
      embedding = embedding.clone();  // the source's table stays as it was
    }
    add_embedding_update(embedding, lora, scale, module);
    ++adapted;
  }
  for (const auto& [module, lora] : ad.modules) {
    const Target tg = target_of(cfg_, module);
    Linear* lin = linear(tg.name);
    require(lin != nullptr, "LoRA adapter: module '" + module + "' is not a linear layer of this model");
    const Update u = update_of(lora, lin->out(), lin->in(), tg.rotary_heads, scale, module);
    if (!u.magnitude.empty()) {
      require(base != nullptr, "LoRA adapter: module '" + module + "' is DoRA, which needs the base weights (attach_lora's `base`)");
      const std::string w_name = tg.name == "output" && base->tied() ? "tok_embeddings" : tg.name;
      const Tensor w = base->dense(w_name);
      lin->set_output_scale(add_update(w.data<float>(), lin->out(), lin->in(), u, nullptr));
    }
    lin->add_lowrank(u.l, *u.r, u.rank);
    ++adapted;
  }
  return adapted;
}

void merge_lora(LlamaSource& src, const PeftAdapter& ad, float scale) {
  require(std::isfinite(scale), "LoRA adapter: the scale must be finite");
  src.densify_blocks();
  const LlamaConfig& c = src.cfg;
  // The weight to change, f32 and owned; a tied classifier is split off the embedding first.
  const auto untie = [&] {
    if (src.tied()) src.tensors["output"] = src.dense("tok_embeddings").clone();
  };
  const auto owned = [&](const std::string& name) -> Tensor& {
    Tensor t = src.dense(name).clone();
    src.quantized.erase(name);
    return src.tensors[name] = t;
  };
  for (const auto& [module, t] : ad.saved) {
    if (peft_module_is(module, "lm_head")) {
      require_saved_shape(t, c.vocab_size, c.dim, module);
      src.tensors["output"] = t.to(DType::F32).clone();
      src.quantized.erase("output");
    } else if (peft_module_is(module, "embed_tokens")) {
      require_saved_shape(t, c.vocab_size, c.dim, module);
      untie();
      src.tensors["tok_embeddings"] = t.to(DType::F32).clone();
      src.quantized.erase("tok_embeddings");
    } else {
      throw Error("LoRA adapter: saved module '" + module + "' is not one tensorzip replaces (" + kSavedModules + ")");
    }
  }
  for (const auto& [module, lora] : ad.embeddings) {
    require(peft_module_is(module, "embed_tokens"), "LoRA adapter: embedding LoRA on '" + module + "', which is not the token embedding");
    untie();
    add_embedding_update(owned("tok_embeddings"), lora, scale, module);
  }
  for (const auto& [module, lora] : ad.modules) {
    const Target tg = target_of(c, module);
    if (tg.name == "output") untie();
    require(src.has(tg.name), "LoRA adapter: module '" + module + "' is not a linear layer of this model");
    Tensor& w = owned(tg.name);
    require(w.ndim() == 2, "LoRA adapter: '" + tg.name + "' is not a matrix");
    const int64_t out = w.dim(0), in = w.dim(1);
    const Update u = update_of(lora, out, in, tg.rotary_heads, scale, module);
    const std::vector<float> g = add_update(w.data<float>(), out, in, u, w.data<float>());
    for (int64_t o = 0; o < int64_t(g.size()); ++o)
      for (int64_t i = 0; i < in; ++i) w.data<float>()[o * in + i] *= g[size_t(o)];
  }
}

}  // namespace tz

namespace tz {

// One adapted linear layer: its bank and, per adapter of the set, the bank's id (−1: untouched).
struct LlamaAdapterSet::Bank {
  AdapterBank bank;
  std::vector<int32_t> local;
  Bank(int64_t out, int64_t in, DType storage) : bank(out, in, storage) {}
};

LlamaAdapterSet::LlamaAdapterSet(const LlamaModel& model, DType storage) : m_(model), storage_(storage) {
  banks_.resize(size_t(model.config().n_layers) * 7 + 1);
}

LlamaAdapterSet::~LlamaAdapterSet() = default;

int32_t LlamaAdapterSet::add(const PeftAdapter& ad, float scale) {
  require(std::isfinite(scale), "LoRA adapter: the scale must be finite");
  require(ad.saved.empty() && ad.embeddings.empty(),
          "LoRA adapter: saved modules and embedding LoRA replace weights of the whole model; batched adapters take linear-layer LoRA only "
          "(merge the adapter, or attach it to a model of its own)");
  const LlamaConfig& c = m_.config();
  static const char* kWhich[7] = {"attention.wq", "attention.wk", "attention.wv", "attention.wo",
                                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"};
  // Every module checked before any bank changes.
  std::vector<std::pair<size_t, LoraAdapter>> parts;
  for (const auto& [module, lora] : ad.modules) {
    const Target tg = target_of(c, module);
    size_t slot = banks_.size() - 1;  // the classifier
    const Linear* lin = &m_.classifier;
    if (tg.name != "output") {
      int l = -1;
      char rest[64] = {};
      std::sscanf(tg.name.c_str(), "layers.%d.%63s", &l, rest);
      const int which = int(std::find_if(std::begin(kWhich), std::end(kWhich), [&](const char* w) { return std::string(rest) == w; }) - std::begin(kWhich));
      require(l >= 0 && l < c.n_layers && which < 7, "LoRA adapter: module '" + module + "' is not a linear layer of this model");
      const LlamaModel::Layer& L = m_.layers[size_t(l)];
      const Linear* lins[7] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3};
      lin = lins[which];
      slot = size_t(l) * 7 + size_t(which);
    }
    require(lora.magnitude.empty(), "LoRA adapter: module '" + module + "' is DoRA, whose row scaling is not a low-rank term (merge or attach it)");
    const Update u = update_of(lora, lin->out(), lin->in(), tg.rotary_heads, scale, module);
    LoraAdapter la;  // L = s·B already scaled: unit scale
    la.rank = u.rank;
    la.alpha = float(u.rank);
    la.a = *u.r;
    la.b = u.l;
    parts.emplace_back(slot, std::move(la));
  }
  for (auto& [slot, la] : parts) {
    auto& b = banks_[slot];
    if (!b) {
      const Linear* lin = &m_.classifier;
      if (slot + 1 < banks_.size()) {
        const LlamaModel::Layer& L = m_.layers[slot / 7];
        const Linear* lins[7] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3};
        lin = lins[slot % 7];
      }
      b = std::make_unique<Bank>(lin->out(), lin->in(), storage_);
    }
    b->local.resize(size_t(count_), -1);
    b->local.push_back(b->bank.add(la));
  }
  removed_.push_back(false);
  return count_++;
}

void LlamaAdapterSet::remove(int32_t id) {
  require(live(id), "LoRA adapters: no adapter " + std::to_string(id) + " to remove");
  for (auto& b : banks_)
    if (b && size_t(id) < b->local.size() && b->local[size_t(id)] >= 0) {
      b->bank.remove(b->local[size_t(id)]);
      b->local[size_t(id)] = -1;
    }
  removed_[size_t(id)] = true;
}

void LlamaAdapterSet::apply(int layer, int which, const float* x, int64_t n, const int32_t* ids, float* y) const {
  const size_t slot = layer < 0 ? banks_.size() - 1 : size_t(layer) * 7 + size_t(which);
  const Bank* b = banks_[slot].get();
  if (b == nullptr) return;
  thread_local std::vector<int32_t> local;
  local.resize(size_t(n));
  bool any = false;
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = ids[t];
    require(id < count_ && (id < 0 || !removed_[size_t(id)]), "LoRA adapters: row " + std::to_string(t) + " names adapter " +
                                                                   std::to_string(id) + ", which is not loaded");
    local[size_t(t)] = id >= 0 && size_t(id) < b->local.size() ? b->local[size_t(id)] : -1;
    any |= local[size_t(t)] >= 0;
  }
  if (!any) return;
  if (fused_) b->bank.apply(x, n, local.data(), y);
  else b->bank.apply_loop(x, n, local.data(), y);
}

}  // namespace tz
