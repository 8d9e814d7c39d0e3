// Loaders into LlamaSource's canonical layout, and the synthetic LLaMA-2-7B-shaped model.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <span>

#include "core/json.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/llama2c.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace fs = std::filesystem;
namespace {

std::string layer(int l, const char* what) { return "layers." + std::to_string(l) + "." + what; }

// Meta's rotary layout from Hugging Face's: HF rows (h, i, j) with i in {0,1} selecting the half
// of the head hold Meta's row (h, 2j + i).
Tensor unpermute_hf_rotary(const Tensor& w, int heads) {
  const int64_t rows = w.dim(0), cols = w.dim(1), hs = rows / heads;
  Tensor out = Tensor::empty(DType::F32, w.shape());
  const float* src = w.data<float>();
  float* dst = out.data<float>();
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < hs / 2; ++j)
        std::memcpy(dst + (h * hs + 2 * j + i) * cols, src + (h * hs + i * hs / 2 + j) * cols, size_t(cols) * 4);
  return out;
}

}  // namespace

LlamaSource load_llama2c(const std::string& path) {
  const auto ck = io::Llama2cCheckpoint::open(path);
  const auto& f = ck.config();
  LlamaSource s;
  s.label = path;
  s.cfg = {f.dim, f.hidden_dim, f.n_layers, f.n_heads, f.n_kv_heads, f.vocab_size, f.seq_len};
  s.tensors["tok_embeddings"] = ck.tensor("token_embedding");
  const std::pair<const char*, const char*> stacked[] = {
      {"rms_att", "attention_norm"}, {"wq", "attention.wq"},   {"wk", "attention.wk"},
      {"wv", "attention.wv"},        {"wo", "attention.wo"},   {"rms_ffn", "ffn_norm"},
      {"w1", "feed_forward.w1"},     {"w2", "feed_forward.w2"}, {"w3", "feed_forward.w3"}};
  for (auto [file_name, name] : stacked) {
    const Tensor all = ck.tensor(file_name);
    for (int l = 0; l < f.n_layers; ++l) s.tensors[layer(l, name)] = all.select(l);
  }
  s.tensors["norm"] = ck.tensor("rms_final");
  if (!f.shared_classifier) s.tensors["output"] = ck.tensor("wcls");
  s.validate();
  return s;
}

// The decoder variants a GGUF architecture name selects (llama.cpp's build_* graphs; the fixture
// models and docs/runner.md describe each).
void set_architecture(LlamaConfig& c, const std::string& arch) {
  c.arch = arch;
  if (arch == "llama") return;
  c.rope_style = RopeStyle::HalfSplit;  // llama.cpp NEOX rope for all of these
  if (arch == "qwen2") {
    c.qkv_bias = true;
  } else if (arch == "gemma2") {
    c.post_norms = true;
    c.ffn_act = FfnActivation::GeluTanh;
    c.embed_scale = std::sqrt(float(c.dim));
    c.sliding_even_layers = true;
  } else if (arch == "olmo2") {
    c.pre_norms = false;
    c.post_norms = true;
    c.qk_norm = true;
  } else if (arch == "qwen3") {  // Qwen2 without the q/k/v biases, with per-head q/k RMSNorm
    c.qk_norm = true;
    c.qk_norm_per_head = true;
  }
}

LlamaSource load_gguf_llama(const std::string& path) {
  const auto g = io::GgufFile::open(path);
  const auto* arch_v = g.find("general.architecture");
  require(arch_v != nullptr, path + ": GGUF without general.architecture");
  const std::string arch = arch_v->as_string();
  require(is_llama_architecture(arch), path + ": GGUF architecture '" + arch + "' is not supported (" + kLlamaArchitectures + ")");
  const auto u = [&](const std::string& key, bool required, uint64_t def) -> uint64_t {
    const auto* v = g.find(arch + "." + key);
    require(v != nullptr || !required, path + ": GGUF metadata '" + arch + "." + key + "' missing");
    if (v == nullptr) return def;
    const uint64_t x = v->as_uint();
    require(x > 0 && x < (1u << 24), path + ": GGUF metadata '" + arch + "." + key + "' = " + std::to_string(x) + " is out of range");
    return x;
  };
  const auto f = [&](const std::string& key, float def) -> float {
    const auto* v = g.find(arch + "." + key);
    if (v == nullptr || v->items.empty()) return def;
    if (const auto* d = std::get_if<double>(&v->items[0])) return float(*d);
    throw Error(path + ": GGUF metadata '" + arch + "." + key + "' is not a float");
  };
  LlamaSource s;
  s.label = path;
  LlamaConfig& c = s.cfg;
  c.dim = int(u("embedding_length", true, 0));
  c.hidden_dim = int(u("feed_forward_length", true, 0));
  c.n_layers = int(u("block_count", true, 0));
  c.n_heads = int(u("attention.head_count", true, 0));
  c.n_kv_heads = int(u("attention.head_count_kv", false, uint64_t(c.n_heads)));
  c.seq_len = int(u("context_length", false, 2048));
  c.norm_eps = f("attention.layer_norm_rms_epsilon", 1e-5f);
  c.rope_theta = f("rope.freq_base", 10000.f);
  set_architecture(c, arch);
  const int key_len = int(u("attention.key_length", false, 0)), value_len = int(u("attention.value_length", false, 0));
  require(key_len == value_len, path + ": attention.key_length " + std::to_string(key_len) + " differs from value_length " +
                                    std::to_string(value_len) + " (not supported)");
  if (key_len > 0 && (c.n_heads == 0 || key_len != c.dim / c.n_heads)) c.head_dim = key_len;
  if (const int rot = int(u("rope.dimension_count", false, 0)); rot > 0)
    require(rot == c.head_size(), path + ": rope.dimension_count " + std::to_string(rot) + " is not the head size " +
                                      std::to_string(c.head_size()) + " (partial rotary embeddings are not supported)");
  if (arch == "phi3") c.sliding_window = int(u("attention.sliding_window", false, 0));
  if (arch == "gemma2") {  // llama.cpp's defaults and rules: a 4096 window, 27B (46 layers) scales by (dim / heads)^-1/2
    c.sliding_window = int(u("attention.sliding_window", false, 4096));
    c.attn_softcap = f("attn_logit_softcapping", 0.f);
    c.final_softcap = f("final_logit_softcapping", 0.f);
    if (c.n_layers == 46 && c.n_heads > 0 && c.dim % c.n_heads == 0) c.attn_scale = 1.f / std::sqrt(float(c.dim / c.n_heads));
  }
  // Rope scaling as llama.cpp reads it: the type defaults to linear, the factor (or the older
  // rope.scale_linear) divides every angle; llama3's per-pair factors come as the rope_freqs tensor.
  {
    const auto* type = g.find(arch + ".rope.scaling.type");
    const std::string t = type != nullptr ? type->as_string() : "linear";
    require(t == "linear" || t == "none", path + ": GGUF metadata '" + arch + ".rope.scaling.type' = '" + t +
                                              "' is not supported (linear or none)");
    float factor = f("rope.scaling.factor", 0.f);
    if (factor == 0.f) factor = f("rope.scale_linear", 0.f);
    require(factor == 0.f || (factor > 0.f && std::isfinite(factor)),
            path + ": GGUF metadata '" + arch + ".rope.scaling.factor' = " + std::to_string(factor) + " (must be positive)");
    if (t == "linear" && factor > 0.f) c.rope_freq_scale = 1.f / factor;
  }
  const auto* emb = g.find_tensor("token_embd.weight");
  require(emb != nullptr, path + ": GGUF without token_embd.weight");
  require(emb->shape.size() == 2, path + ": token_embd.weight is not a matrix");
  c.vocab_size = int(emb->shape[0]);
  const auto get = [&](const std::string& gguf_name, const std::string& name) {
    const auto* t = g.find_tensor(gguf_name);
    if (t != nullptr && t->shape.size() == 2 && ggml_gemm_supported(t->ggml_type)) {
      // Every quantized type stays as llama.cpp's blocks, run by ggml_gemm: resident weights are
      // the file's bytes and products round as llama.cpp's (its activation blocks reproduced).
      // The embedding too: its rows are dequantized on lookup.
      auto& c = s.quantized[name];
      const std::string what = path + ": tensor '" + gguf_name + "'";
      c.ggml = std::make_shared<const GgmlMatrix>(
          g.keepalive() ? GgmlMatrix::borrow(t->ggml_type, t->shape[0], t->shape[1], g.tensor_data(*t), g.keepalive(), what)
                        : GgmlMatrix::from_blocks(t->ggml_type, t->shape[0], t->shape[1], g.tensor_data(*t), what));
      c.method = std::string("gguf ") + io::ggml_type_info(t->ggml_type)->name;
      return;
    }
    s.tensors[name] = g.tensor_f32(gguf_name);
  };
  // Fused matrices (phi3) split by rows into the canonical ones, dequantized.
  const auto split_rows = [&](const std::string& gguf_name, const std::vector<std::pair<std::string, int64_t>>& parts) {
    const Tensor all = g.tensor_f32(gguf_name);
    int64_t total = 0;
    for (const auto& [name, rows] : parts) total += rows;
    require(all.ndim() == 2 && all.dim(0) == total, path + ": tensor '" + gguf_name + "' has shape " + shape_to_string(all.shape()) +
                                                        ", expected " + std::to_string(total) + " rows");
    int64_t r0 = 0;
    for (const auto& [name, rows] : parts) {
      Tensor t = Tensor::empty(DType::F32, {rows, all.dim(1)});
      std::memcpy(t.raw(), all.data<float>() + r0 * all.dim(1), size_t(rows * all.dim(1)) * 4);
      s.tensors[name] = t;
      r0 += rows;
    }
  };
  get("token_embd.weight", "tok_embeddings");
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const auto L = [&](const char* what) { return layer(l, what); };
    if (c.pre_norms) {
      get(b + "attn_norm.weight", L("attention_norm"));
      get(b + "ffn_norm.weight", L("ffn_norm"));
    }
    if (c.post_norms) {
      get(b + "post_attention_norm.weight", L("post_attention_norm"));
      get(b + "post_ffw_norm.weight", L("post_ffn_norm"));
    }
    if (g.find_tensor(b + "attn_qkv.weight") != nullptr) {
      split_rows(b + "attn_qkv.weight", {{L("attention.wq"), c.q_dim()}, {L("attention.wk"), c.kv_dim()}, {L("attention.wv"), c.kv_dim()}});
    } else {
      get(b + "attn_q.weight", L("attention.wq"));
      get(b + "attn_k.weight", L("attention.wk"));
      get(b + "attn_v.weight", L("attention.wv"));
    }
    get(b + "attn_output.weight", L("attention.wo"));
    if (c.qkv_bias) {
      get(b + "attn_q.bias", L("attention.bq"));
      get(b + "attn_k.bias", L("attention.bk"));
      get(b + "attn_v.bias", L("attention.bv"));
    }
    if (c.qk_norm) {
      get(b + "attn_q_norm.weight", L("attention.q_norm"));
      get(b + "attn_k_norm.weight", L("attention.k_norm"));
    }
    if (g.find_tensor(b + "ffn_gate.weight") == nullptr && arch == "phi3") {  // ffn_up rows: [gate; up]
      split_rows(b + "ffn_up.weight", {{L("feed_forward.w1"), c.hidden_dim}, {L("feed_forward.w3"), c.hidden_dim}});
    } else {
      get(b + "ffn_gate.weight", L("feed_forward.w1"));
      get(b + "ffn_up.weight", L("feed_forward.w3"));
    }
    get(b + "ffn_down.weight", L("feed_forward.w2"));
  }
  get("output_norm.weight", "norm");
  if (g.find_tensor("output.weight") != nullptr) get("output.weight", "output");
  if (g.find_tensor("rope_freqs.weight") != nullptr) get("rope_freqs.weight", "rope_freqs");
  for (const auto& t : g.tensors()) {
    int blk = -1;
    if (std::sscanf(t.name.c_str(), "blk.%d.", &blk) == 1)
      require(blk >= 0 && blk < c.n_layers, path + ": tensor '" + t.name + "' belongs to block " + std::to_string(blk) + " but " + arch +
                                                ".block_count is " + std::to_string(c.n_layers));
  }
  if (g.find("tokenizer.ggml.model") != nullptr) s.tokenizer = Tokenizer::from_gguf(g);
  if (const auto* t = g.find("tokenizer.chat_template")) s.chat_template = t->as_string();
  s.validate();
  return s;
}

std::vector<float> llama3_rope_factors(int head_size, float theta, float factor, float low_freq_factor, float high_freq_factor,
                                       int original_context) {
  require(high_freq_factor > low_freq_factor, "rope_scaling llama3: high_freq_factor " + std::to_string(high_freq_factor) +
                                                  " must exceed low_freq_factor " + std::to_string(low_freq_factor));
  const double low_wavelen = original_context / double(low_freq_factor), high_wavelen = original_context / double(high_freq_factor);
  std::vector<float> out;
  for (int i = 0; i < head_size; i += 2) {
    const double freq = 1.0 / std::pow(double(theta), double(float(i) / float(head_size)));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) out.push_back(1.f);
    else if (wavelen > low_wavelen) out.push_back(factor);
    else {
      const double smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      out.push_back(float(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

HfConfig parse_hf_config(std::string_view text, const std::string& label) {
  const json_io::Json j = json_io::parse(text, label);
  require(j.is_object(), label + ": not a JSON object");
  HfConfig h;
  LlamaConfig& c = h.cfg;
  try {
    const std::string type = j.value("model_type", "llama");
    require(type == "mistral" || is_llama_architecture(type),
            label + ": model_type '" + type + "' is not supported (mistral, " + kLlamaArchitectures + ")");
    constexpr int64_t kMax = (int64_t(1) << 24) - 1;
    const auto integer = [&](const char* key, std::optional<int64_t> def = std::nullopt) {
      return int(json_io::get_int(j, key, label, 1, kMax, def));
    };
    c.dim = integer("hidden_size");
    c.hidden_dim = integer("intermediate_size");
    c.n_layers = integer("num_hidden_layers");
    c.n_heads = integer("num_attention_heads");
    c.n_kv_heads = integer("num_key_value_heads", c.n_heads);
    c.vocab_size = integer("vocab_size");
    c.seq_len = integer("max_position_embeddings", 2048);
    c.norm_eps = float(json_io::get_number(j, "rms_norm_eps", label, 1e-30, 1.0, 1e-6));
    c.rope_theta = float(json_io::get_number(j, "rope_theta", label, 1e-3, 1e30, 10000.0));
    set_architecture(c, type == "mistral" ? "llama" : type);  // after dim: gemma2's embedding scale is sqrt(dim)
    // Gemma 2 (transformers' Gemma2Config defaults where a key is absent): its own head size, a
    // window on alternate layers, soft-capped scores and logits, tanh-GELU, tied embeddings.
    const bool gemma2 = type == "gemma2";
    if (gemma2) {
      c.head_dim = integer("head_dim", 256);
      c.sliding_window = integer("sliding_window", 4096);
      const auto softcap = [&](const char* key, double def) {  // null: off
        return j.contains(key) && j[key].is_null() ? 0.f : float(json_io::get_number(j, key, label, 0.0, 1e30, def));
      };
      c.attn_softcap = softcap("attn_logit_softcapping", 50.0);
      c.final_softcap = softcap("final_logit_softcapping", 30.0);
      // Scores are scaled by query_pre_attn_scalar^-1/2 (head_dim in 2B / 9B, dim / heads in 27B).
      const int64_t qs = json_io::get_int(j, "query_pre_attn_scalar", label, 1, kMax, int64_t(c.head_dim));
      if (qs != c.head_dim) c.attn_scale = 1.f / std::sqrt(float(qs));
      for (const char* key : {"hidden_activation", "hidden_act"})
        if (j.contains(key) && !j[key].is_null())
          require(j[key] == "gelu_pytorch_tanh", label + ": " + key + " '" + j[key].dump() + "' is not supported (gelu_pytorch_tanh)");
    }
    const auto tie = j.value("tie_word_embeddings", nlohmann::json(gemma2));
    require(tie.is_boolean(), label + ": 'tie_word_embeddings' is not true or false");
    h.tie_word_embeddings = tie.get<bool>();
    if (type == "qwen3") {  // transformers' Qwen3Config: head_dim 128 unless given, no attention biases
      c.head_dim = integer("head_dim", 128);
      require(!j.value("attention_bias", false), label + ": attention_bias (q/k/v biases in a qwen3 model) is not supported");
    }
    if (const auto rs = j.value("rope_scaling", nlohmann::json()); !rs.is_null()) {
      const std::string where = label + ": rope_scaling";
      require(rs.is_object(), where + " is not an object");
      const std::string t = rs.contains("rope_type") ? rs["rope_type"].get<std::string>() : rs.value("type", std::string("default"));
      require(t == "default" || t == "linear" || t == "llama3", where + ": type '" + t + "' is not supported (linear, llama3)");
      if (t != "default") {
        const float factor = float(json_io::get_number(rs, "factor", where, 1e-6, 1e6));
        if (t == "linear") c.rope_freq_scale = 1.f / factor;
        else
          h.rope_factors = llama3_rope_factors(c.head_size(), c.rope_theta, factor, float(json_io::get_number(rs, "low_freq_factor", where, 1e-6, 1e6, 1.0)),
                                               float(json_io::get_number(rs, "high_freq_factor", where, 1e-6, 1e6, 4.0)),
                                               int(json_io::get_int(rs, "original_max_position_embeddings", where, 1, int64_t(1) << 24, 8192)));
      }
    }
    if (type == "qwen2" || type == "qwen3")  // Qwen's sliding window applies only when use_sliding_window says so
      require(!j.value("use_sliding_window", false), label + ": use_sliding_window (Qwen2 sliding-window layers) is not supported");
    if (type == "phi3" && j.contains("sliding_window") && !j["sliding_window"].is_null())
      c.sliding_window = int(json_io::get_int(j, "sliding_window", label, 1, kMax));
    if (j.contains("quantization_config") && !j["quantization_config"].is_null())
      h.quant = io::parse_hf_quant_config(j["quantization_config"].dump(), label);
  } catch (const nlohmann::json::exception& e) {
    throw Error(label + ": " + e.what());
  }
  c.validate(label);
  return h;
}

LlamaSource load_hf_llama(const std::string& path) {
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path cfg_path = dir / "config.json";
  require(fs::exists(cfg_path), cfg_path.string() + ": cannot open (a Hugging Face model directory needs config.json)");
  HfConfig hf = parse_hf_config(io::read_text_file(cfg_path.string()), cfg_path.string());
  if (const fs::path qc = dir / "quantize_config.json"; !hf.quant && fs::exists(qc))  // AutoGPTQ's own file
    hf.quant = io::parse_hf_quant_config(io::read_text_file(qc.string()), qc.string());
  LlamaSource s;
  s.label = dir.string();
  s.cfg = hf.cfg;
  LlamaConfig& c = s.cfg;
  const bool tie = hf.tie_word_embeddings;
  // One file, or shards listed in model.safetensors.index.json.
  std::vector<fs::path> files;
  if (fs::exists(dir / "model.safetensors")) {
    files.push_back(dir / "model.safetensors");
  } else {
    const fs::path idx = dir / "model.safetensors.index.json";
    require(fs::exists(idx), dir.string() + ": neither model.safetensors nor model.safetensors.index.json");
    const nlohmann::json ij = json_io::parse(io::read_text_file(idx.string()), idx.string());
    try {
      std::set<std::string> names;
      for (auto& [k, v] : ij.at("weight_map").items()) names.insert(v.get<std::string>());
      for (const auto& n : names) {
        require(n.find('/') == std::string::npos, idx.string() + ": shard '" + n + "' is not a file name in the directory");
        files.push_back(dir / n);
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(idx.string() + ": " + e.what());
    }
  }
  std::vector<io::SafetensorsFile> opened;
  for (const auto& f : files) opened.push_back(io::SafetensorsFile::open(f.string()));
  std::set<std::string> used;
  const auto file_of = [&](const std::string& tensor) -> const io::SafetensorsFile* {
    for (const auto& f : opened)
      if (f.find(tensor) != nullptr) return &f;
    return nullptr;
  };
  // A quantized module BASE (BASE.qweight / .qzeros / .scales / .g_idx) with its codes.
  const auto quantized_module = [&](const std::string& base) {
    const io::SafetensorsFile* f = file_of(base + ".qweight");
    require(hf.quant.has_value(), f->label() + ": tensor '" + base + ".qweight' in a checkpoint without quantization_config (config.json or quantize_config.json)");
    io::HfQuantTensors t;
    const auto part = [&](const char* suffix, bool needed) {
      const io::SafetensorsFile* pf = file_of(base + suffix);
      require(pf != nullptr || !needed, dir.string() + ": missing tensor '" + base + suffix + "'");
      if (pf == nullptr) return Tensor();
      used.insert(base + suffix);
      return pf->tensor(base + suffix);
    };
    t.qweight = part(".qweight", true);
    t.qzeros = part(".qzeros", true);
    t.scales = part(".scales", true);
    t.g_idx = part(".g_idx", false);
    io::HfQuantLinear u = io::unpack_hf_quant(*hf.quant, t, f->label() + ": " + base);
    CompressedLinear c;
    c.q = std::move(u.q);
    c.input_perm = std::move(u.input_perm);
    c.method = hf.quant->name();
    return c;
  };
  const auto hf_rotary_rows = [](int64_t rows, int heads) {  // Meta's row (h, 2j + i) is HF's (h, i, j)
    std::vector<int64_t> order(static_cast<size_t>(rows));
    const int64_t hs = rows / heads;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < hs / 2; ++j) order[size_t(h * hs + 2 * j + i)] = h * hs + i * hs / 2 + j;
    return order;
  };
  const auto get = [&](const std::string& hf, const std::string& name, int rotary_heads = 0) {
    const std::string base = hf.ends_with(".weight") ? hf.substr(0, hf.size() - 7) : "";
    if (!base.empty() && file_of(hf) == nullptr && file_of(base + ".qweight") != nullptr) {
      CompressedLinear c = quantized_module(base);
      if (rotary_heads > 0) {
        require(c.rows() % (2 * rotary_heads) == 0, dir.string() + ": tensor '" + base + ".qweight' has " + std::to_string(c.rows()) +
                                                        " outputs, not a whole number of heads");
        c.q = select_rows(c.q, hf_rotary_rows(c.rows(), rotary_heads));
      }
      s.quantized[name] = std::move(c);
      return;
    }
    used.insert(hf);
    used.insert(hf);
    for (const auto& f : opened)
      if (f.find(hf) != nullptr) {
        Tensor t = f.tensor(hf);
        require(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
                f.label() + ": tensor '" + hf + "' has dtype " + dtype_name(t.dtype()) + " (need f32, f16 or bf16)");
        if (t.dtype() != DType::F32) t = t.to(DType::F32);
        if (rotary_heads > 0) {
          require(t.ndim() == 2 && t.dim(0) % (2 * rotary_heads) == 0, f.label() + ": tensor '" + hf + "' has a bad shape " + shape_to_string(t.shape()));
          t = unpermute_hf_rotary(t, rotary_heads);
        }
        s.tensors[name] = t;
        return;
      }
    throw Error(dir.string() + ": missing tensor '" + hf + "'");
  };
  // Fused matrices (phi3: qkv_proj, gate_up_proj) split by rows into the canonical ones.
  const auto split_rows = [&](const std::string& hf, const std::vector<std::pair<std::string, int64_t>>& parts) {
    get(hf, "fused");
    if (auto q = s.quantized.find("fused"); q != s.quantized.end()) {
      const CompressedLinear all = std::move(q->second);
      s.quantized.erase(q);
      int64_t total = 0;
      for (const auto& [name, rows] : parts) total += rows;
      require(all.rows() == total, dir.string() + ": tensor '" + hf + "' has " + std::to_string(all.rows()) + " outputs, expected " + std::to_string(total));
      int64_t r0 = 0;
      for (const auto& [name, rows] : parts) {
        CompressedLinear c = all;
        std::vector<int64_t> idx(static_cast<size_t>(rows));
        std::iota(idx.begin(), idx.end(), r0);
        c.q = select_rows(all.q, idx);
        s.quantized[name] = std::move(c);
        r0 += rows;
      }
      return;
    }
    const Tensor all = s.tensors.at("fused");
    s.tensors.erase("fused");
    int64_t total = 0;
    for (const auto& [name, rows] : parts) total += rows;
    require(all.ndim() == 2 && all.dim(0) == total, dir.string() + ": tensor '" + hf + "' has shape " + shape_to_string(all.shape()) +
                                                        ", expected " + std::to_string(total) + " rows");
    int64_t r0 = 0;
    for (const auto& [name, rows] : parts) {
      Tensor t = Tensor::empty(DType::F32, {rows, all.dim(1)});
      std::memcpy(t.raw(), all.data<float>() + r0 * all.dim(1), size_t(rows * all.dim(1)) * 4);
      s.tensors[name] = t;
      r0 += rows;
    }
  };
  // Hugging Face stores q/k in rotate-half order: LLaMA's GGUF layout (adjacent pairs) needs them
  // permuted; the NEOX-rotary architectures use that order as it is.
  const bool adjacent = c.rope_style == RopeStyle::Adjacent;
  get("model.embed_tokens.weight", "tok_embeddings");
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const auto L = [&](const char* what) { return layer(l, what); };
    if (c.arch == "gemma2") {  // norms before and after both attention and the MLP, each stored as w for (1 + w)
      get(p + "input_layernorm.weight", L("attention_norm"));
      get(p + "post_attention_layernorm.weight", L("post_attention_norm"));
      get(p + "pre_feedforward_layernorm.weight", L("ffn_norm"));
      get(p + "post_feedforward_layernorm.weight", L("post_ffn_norm"));
    } else if (c.pre_norms) {
      get(p + "input_layernorm.weight", L("attention_norm"));
      get(p + "post_attention_layernorm.weight", L("ffn_norm"));
    } else {  // olmo2: norms after attention and after the MLP
      get(p + "post_attention_layernorm.weight", L("post_attention_norm"));
      get(p + "post_feedforward_layernorm.weight", L("post_ffn_norm"));
    }
    if (c.arch == "phi3") {
      split_rows(p + "self_attn.qkv_proj.weight", {{L("attention.wq"), c.q_dim()}, {L("attention.wk"), c.kv_dim()}, {L("attention.wv"), c.kv_dim()}});
      split_rows(p + "mlp.gate_up_proj.weight", {{L("feed_forward.w1"), c.hidden_dim}, {L("feed_forward.w3"), c.hidden_dim}});
    } else {
      get(p + "self_attn.q_proj.weight", L("attention.wq"), adjacent ? c.n_heads : 0);
      get(p + "self_attn.k_proj.weight", L("attention.wk"), adjacent ? c.n_kv_heads : 0);
      get(p + "self_attn.v_proj.weight", L("attention.wv"));
      get(p + "mlp.gate_proj.weight", L("feed_forward.w1"));
      get(p + "mlp.up_proj.weight", L("feed_forward.w3"));
    }
    get(p + "self_attn.o_proj.weight", L("attention.wo"));
    get(p + "mlp.down_proj.weight", L("feed_forward.w2"));
    if (c.qkv_bias) {
      get(p + "self_attn.q_proj.bias", L("attention.bq"));
      get(p + "self_attn.k_proj.bias", L("attention.bk"));
      get(p + "self_attn.v_proj.bias", L("attention.bv"));
    }
    if (c.qk_norm) {
      get(p + "self_attn.q_norm.weight", L("attention.q_norm"));
      get(p + "self_attn.k_norm.weight", L("attention.k_norm"));
    }
  }
  get("model.norm.weight", "norm");
  if (c.arch == "gemma2")  // the decoder multiplies by the norm weight itself, as the GGUF converter stores it: 1 + w
    for (auto& [name, t] : s.tensors)
      if (name == "norm" || name.ends_with("_norm")) {
        t = t.clone();  // f32 tensors may be the mapped file's read-only pages
        for (float& v : std::span(t.data<float>(), size_t(t.numel()))) v += 1.f;
      }
  const bool has_head = file_of("lm_head.weight") != nullptr || file_of("lm_head.qweight") != nullptr;
  if (has_head && !tie) get("lm_head.weight", "output");
  // Every tensor must be one the config accounts for: a checkpoint with more layers than
  // num_hidden_layers says (or another architecture's tensors) is refused, not silently cut.
  for (const auto& f : opened)
    for (const auto& e : f.tensors()) {
      const bool ignorable = e.name.ends_with("rotary_emb.inv_freq") || (tie && e.name == "lm_head.weight");
      require(used.count(e.name) || ignorable,
              f.label() + ": tensor '" + e.name + "' is not part of the model " + cfg_path.string() + " describes (" +
                  std::to_string(c.n_layers) + " layers, " + (tie ? "tied" : "separate") + " classifier)");
    }
  if (!hf.rope_factors.empty()) {
    Tensor t = Tensor::empty(DType::F32, {int64_t(hf.rope_factors.size())});
    std::copy(hf.rope_factors.begin(), hf.rope_factors.end(), t.data<float>());
    s.tensors["rope_freqs"] = std::move(t);
  }
  if (fs::exists(dir / "tokenizer.json")) s.tokenizer = Tokenizer::from_hf_json((dir / "tokenizer.json").string());
  if (const fs::path tc = dir / "tokenizer_config.json"; fs::exists(tc)) {
    const auto j = json_io::parse(io::read_text_file(tc.string()), tc.string());
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) s.chat_template = j["chat_template"].get<std::string>();
  }
  s.validate();
  return s;
}

namespace {

enum class ModelFile { HuggingFace, Gguf, Tensorzip, Safetensors, Llama2c };

// What a path holds, from its kind, magic bytes and name; shared by load_llama and is_llama_model.
ModelFile model_file_kind(const std::string& path) {
  if (fs::is_directory(path)) return ModelFile::HuggingFace;
  const fs::path p(path);
  if (p.filename() == "config.json") return ModelFile::HuggingFace;
  const auto f = io::MappedFile::open(path);  // by content, whatever the file is named
  const std::string format = io::sniff_format(f->data(), f->size());
  if (format == "gguf") return ModelFile::Gguf;
  if (format == "safetensors") {
    if (is_tensorzip_file(path)) return ModelFile::Tensorzip;
    return fs::exists(p.parent_path() / "config.json") ? ModelFile::HuggingFace : ModelFile::Safetensors;
  }
  return ModelFile::Llama2c;
}

}  // namespace

LlamaSource load_llama(const std::string& path) {
  switch (model_file_kind(path)) {
    case ModelFile::Gguf: return load_gguf_llama(path);
    case ModelFile::Tensorzip: return load_tensorzip(path);
    case ModelFile::Llama2c: return load_llama2c(path);
    case ModelFile::Safetensors:
      throw Error(path + ": a safetensors file without config.json beside it (not a tensorzip file): no model config to run it with");
    default: return load_hf_llama(path);
  }
}

bool is_llama_model(const std::string& path) { return model_file_kind(path) != ModelFile::Safetensors; }

Tokenizer default_tokenizer(const LlamaSource& src, const std::string& model_path) {
  if (src.tokenizer) return *src.tokenizer;
  const fs::path dir = fs::is_directory(model_path) ? fs::path(model_path) : fs::path(model_path).parent_path();
  for (const char* name : {"tokenizer.bin", "tok512.bin"}) {
    const fs::path p = dir / name;
    if (fs::exists(p)) return Tokenizer::from_llama2c(p.string(), src.cfg.vocab_size);
  }
  throw Error(model_path + ": no tokenizer inside the file and no tokenizer.bin beside it; pass --tokenizer");
}

LlamaConfig llama2_7b_config(int n_layers) {
  LlamaConfig c;
  c.dim = 4096;
  c.hidden_dim = 11008;
  c.n_layers = n_layers;
  c.n_heads = 32;
  c.n_kv_heads = 32;
  c.vocab_size = 32000;
  c.seq_len = 2048;
  return c;
}

LlamaSource synthetic_llama(const LlamaConfig& cfg, uint64_t seed) {
  cfg.validate("synthetic model");
  LlamaSource s;
  s.label = "synthetic(" + cfg.to_string() + ")";
  s.cfg = cfg;
  const auto fill = [&](const std::string& name, Shape shape, float scale, float offset) {
    Tensor t = Tensor::empty(DType::F32, shape);
    float* p = t.data<float>();
    const int64_t n = t.numel(), chunks = 64;
    const uint64_t salt = std::hash<std::string>{}(name);
    parallel_for(chunks, [&](int64_t c, int) {
      const Range r = split_range(n, chunks, c);
      std::mt19937_64 rng(seed ^ salt ^ (uint64_t(c) * 0x9E3779B97F4A7C15ull));
      std::uniform_real_distribution<float> u(-scale, scale);
      for (int64_t i = r.begin; i < r.end; ++i) p[i] = offset + u(rng);
    });
    s.tensors[name] = t;
  };
  const int64_t D = cfg.dim, H = cfg.hidden_dim, KV = cfg.kv_dim();
  // Uniform weights with the variance of N(0, 1/in): activations keep their scale layer to layer.
  const float wd = std::sqrt(3.f / float(D)), wh = std::sqrt(3.f / float(H));
  fill("tok_embeddings", {cfg.vocab_size, D}, 1.f, 0.f);
  for (int l = 0; l < cfg.n_layers; ++l) {
    fill(layer(l, "attention_norm"), {D}, 0.1f, 1.f);
    fill(layer(l, "ffn_norm"), {D}, 0.1f, 1.f);
    fill(layer(l, "attention.wq"), {D, D}, wd, 0.f);
    fill(layer(l, "attention.wk"), {KV, D}, wd, 0.f);
    fill(layer(l, "attention.wv"), {KV, D}, wd, 0.f);
    fill(layer(l, "attention.wo"), {D, D}, wd, 0.f);
    fill(layer(l, "feed_forward.w1"), {H, D}, wd, 0.f);
    fill(layer(l, "feed_forward.w2"), {D, H}, wh, 0.f);
    fill(layer(l, "feed_forward.w3"), {H, D}, wd, 0.f);
  }
  fill("norm", {D}, 0.1f, 1.f);
  fill("output", {cfg.vocab_size, D}, wd, 0.f);
  return s;
}

}  // namespace tz
