// tensorzip model files: write_tensorzip / load_tensorzip (format in llama.h and docs/formats.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/json.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

using nlohmann::json;
constexpr const char* kFormatKey = "tensorzip.format";
constexpr const char* kFormatValue = "tensorzip-model-1";

// Text carried as a U8 [bytes] tensor (tokenizer.json, tokenizer.wordpiece.json), and back.
Tensor text_tensor(const std::string& text) {
  Tensor t = Tensor::empty(DType::U8, {int64_t(text.size())});
  std::memcpy(t.raw(), text.data(), text.size());
  return t;
}

std::string tensor_text(const io::SafetensorsFile& f, const std::string& name) {
  const auto* e = f.find(name);
  require(e->dtype == DType::U8 && e->shape.size() == 1, f.label() + ": tensor '" + name + "' must be U8 [bytes]");
  const Tensor t = f.tensor(name);
  return std::string(reinterpret_cast<const char*>(t.data<uint8_t>()), size_t(t.numel()));
}

json config_json(const LlamaConfig& c) {
  json j = {{"architecture", c.arch}, {"dim", c.dim}, {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers},
            {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads}, {"vocab_size", c.vocab_size}, {"seq_len", c.seq_len},
            {"norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta}};
  if (c.rope_freq_scale != 1.f) j["rope_freq_scale"] = c.rope_freq_scale;
  if (!c.plain_llama())  // the architecture switches (LlamaConfig), only when any differs from LLaMA's
    j.update({{"head_dim", c.head_dim}, {"rope_style", c.rope_style == RopeStyle::Adjacent ? "adjacent" : "half_split"},
              {"pre_norms", c.pre_norms}, {"post_norms", c.post_norms}, {"qkv_bias", c.qkv_bias}, {"qk_norm", c.qk_norm}, {"qk_norm_per_head", c.qk_norm_per_head},
              {"ffn_act", c.ffn_act == FfnActivation::SiLU ? "silu" : "gelu_tanh"}, {"embed_scale", c.embed_scale},
              {"attn_softcap", c.attn_softcap}, {"final_softcap", c.final_softcap}, {"attn_scale", c.attn_scale}, {"sliding_window", c.sliding_window},
              {"sliding_even_layers", c.sliding_even_layers}});
  return j;
}

}  // namespace

void write_tensorzip(const LlamaSource& src, const Tokenizer* tok, const std::string& path,
                     const std::map<std::string, std::string>& extra_metadata) {
  if (src.cfg.dim > 0) src.validate();
  io::SafetensorsWriter w;
  std::vector<Tensor> keep;  // the writer references tensors until write()
  const auto add = [&](const std::string& name, Tensor t) {
    keep.push_back(std::move(t));
    w.add(name, keep.back());
  };
  for (const auto& [name, t] : src.tensors) add(name, t.is_contiguous() ? t : t.clone());
  json formats = json::object();
  for (const auto& [name, c] : src.quantized) {
    if (c.ggml) {  // llama.cpp's blocks, byte for byte: NAME.ggml U8 [rows, row bytes]
      const GgmlMatrix& g = *c.ggml;
      Tensor blocks = Tensor::empty(DType::U8, {g.rows, int64_t(g.row_bytes())});
      std::memcpy(blocks.raw(), g.data(), g.bytes());
      add(name + ".ggml", blocks);
      formats[name] = {{"rows", g.rows}, {"cols", g.cols}, {"ggml_type", g.type_name()}, {"method", c.method},
                       {"bits_per_weight", c.bits_per_weight()}};
      continue;
    }
    const QuantMatrix& q = c.q;
    const int64_t ng = q.groups_per_row();
    Tensor codes = Tensor::empty(DType::U8, {q.rows, int64_t(q.packed_row_bytes())});
    std::memcpy(codes.raw(), q.codes.data(), q.codes.size());
    add(name + ".qweight", codes);
    Tensor scales = Tensor::empty(q.fmt.scale_dtype, {q.rows, ng});
    if (q.fmt.scale_dtype == DType::F16) f32_to_f16(q.scales.data(), scales.data<uint16_t>(), q.scales.size());
    else std::memcpy(scales.raw(), q.scales.data(), q.scales.size() * 4);
    add(name + ".scales", scales);
    if (!q.zeros.empty()) {
      // Integer zero points (what tensorzip's quantizers make) as U8; fractional ones (GGUF
      // K-quants' folded mins, kept native) as F32, exactly.
      const bool integral = std::all_of(q.zeros.begin(), q.zeros.end(), [](float v) { return v >= 0 && v <= 255 && v == std::nearbyint(v); });
      Tensor z = Tensor::empty(integral ? DType::U8 : DType::F32, {q.rows, ng});
      for (size_t i = 0; i < q.zeros.size(); ++i) {
        if (integral) z.data<uint8_t>()[i] = uint8_t(q.zeros[i]);
        else z.data<float>()[i] = q.zeros[i];
      }
      add(name + ".zeros", z);
    }
    if (!c.input_scale.empty()) add(name + ".input_scale", Tensor::view(DType::F32, {q.cols}, const_cast<float*>(c.input_scale.data())).clone());
    if (!c.input_perm.empty()) add(name + ".input_perm", Tensor::view(DType::I32, {q.cols}, const_cast<int32_t*>(c.input_perm.data())).clone());
    const int64_t k = int64_t(c.outlier_cols.size());
    if (k > 0) {
      add(name + ".outlier_cols", Tensor::view(DType::I32, {k}, const_cast<int32_t*>(c.outlier_cols.data())).clone());
      Tensor ow = Tensor::empty(DType::F16, {q.rows, k});
      f32_to_f16(c.outlier_w.data(), ow.data<uint16_t>(), c.outlier_w.size());
      add(name + ".outlier_weight", ow);
    }
    if (c.rank > 0) {
      add(name + ".lora_l", Tensor::view(DType::F32, {q.rows, c.rank}, const_cast<float*>(c.lora_l.data())).clone());
      add(name + ".lora_r", Tensor::view(DType::F32, {c.rank, q.cols}, const_cast<float*>(c.lora_r.data())).clone());
    }
    formats[name] = {{"rows", q.rows}, {"cols", q.cols}, {"bits", q.fmt.bits}, {"group", q.fmt.group},
                     {"symmetric", q.fmt.symmetric}, {"ternary", q.fmt.ternary},
                     {"scale_dtype", q.fmt.scale_dtype == DType::F16 ? "f16" : "f32"}, {"method", c.method},
                     {"outliers", k}, {"rank", c.rank}, {"input_scale", !c.input_scale.empty()}, {"input_perm", !c.input_perm.empty()},
                     {"bits_per_weight", c.bits_per_weight()}};
  }
  w.set_metadata(kFormatKey, kFormatValue);
  w.set_metadata("tensorzip.tensors", json_io::dump(formats));
  if (src.cfg.dim > 0) w.set_metadata("tensorzip.config", json_io::dump(config_json(src.cfg)));
  if (tok && tok->kind() == Tokenizer::Kind::ByteBpe) add("tokenizer.json", text_tensor(tok->to_hf_json()));
  if (tok && tok->kind() == Tokenizer::Kind::WordPiece)  // as its vocabulary and ids
    add("tokenizer.wordpiece.json", text_tensor(tok->to_wordpiece_json()));
  if (tok && tok->kind() == Tokenizer::Kind::SentencePiece) {
    const auto bytes = tok->to_llama2c();
    Tensor tb = Tensor::empty(DType::U8, {int64_t(bytes.size())});
    std::memcpy(tb.raw(), bytes.data(), bytes.size());
    add("tokenizer.bin", tb);
    const auto st = tok->settings();
    w.set_metadata("tensorzip.tokenizer", json_io::dump(json{{"space", st.space}, {"dummy_prefix", st.dummy_prefix}, {"bos", st.bos}, {"eos", st.eos}}));
  }
  if (!src.chat_template.empty()) w.set_metadata("tensorzip.chat_template", src.chat_template);
  for (const auto& [k, v] : extra_metadata) w.set_metadata(k, v);
  w.write(path);
}

bool is_tensorzip_file(const std::string& path) {
  try {
    const auto f = io::SafetensorsFile::open(path);
    auto it = f.metadata().find(kFormatKey);
    return it != f.metadata().end() && it->second == kFormatValue;
  } catch (const Error&) {
    return false;
  }
}

LlamaSource load_tensorzip(const std::string& path) { return parse_tensorzip(io::SafetensorsFile::open(path)); }

LlamaSource parse_tensorzip(const io::SafetensorsFile& f) {
  const std::string& path = f.label();
  const auto meta = [&](const char* key) -> const std::string* {
    auto it = f.metadata().find(key);
    return it == f.metadata().end() ? nullptr : &it->second;
  };
  const std::string* fmt = meta(kFormatKey);
  require(fmt != nullptr && *fmt == kFormatValue, path + ": not a tensorzip model file (metadata " + kFormatKey + " missing)");
  LlamaSource s;
  s.label = path;
  try {
    const json formats = json_io::parse(meta("tensorzip.tensors") ? *meta("tensorzip.tensors") : std::string("{}"), path + " (metadata tensorzip.tensors)");
    require(formats.is_object(), path + ": metadata tensorzip.tensors is not a JSON object");
    std::set<std::string> parts;
    for (auto it = formats.begin(); it != formats.end(); ++it) {
      const std::string& name = it.key();
      const json& d = it.value();
      CompressedLinear c;
      QuantMatrix& q = c.q;
      const std::string where = path + ": tensor '" + name + "'";
      require(d.is_object(), where + ": format is not a JSON object");
      constexpr int64_t kMaxDim = (int64_t(1) << 24) - 1;
      if (d.contains("ggml_type")) {  // llama.cpp blocks kept as they were
        require(d.at("ggml_type").is_string(), where + ": ggml_type is not a string");
        const std::string tname = d.at("ggml_type").get<std::string>();
        const io::GgmlTypeInfo* ti = io::ggml_type_by_name(tname);
        require(ti != nullptr && ggml_gemm_supported(ti->id), where + ": ggml_type '" + tname + "' is not supported");
        const int64_t rows = json_io::get_int(d, "rows", where, 1, kMaxDim), cols = json_io::get_int(d, "cols", where, 1, kMaxDim);
        require(cols % int64_t(ti->block_values) == 0, where + ": " + std::to_string(cols) + " columns are not whole " + tname + " blocks");
        const int64_t row_bytes = cols / int64_t(ti->block_values) * int64_t(ti->block_bytes);
        parts.insert(name + ".ggml");
        const auto* e = f.find(name + ".ggml");
        require(e != nullptr, path + ": tensor '" + name + ".ggml' missing");
        require(e->dtype == DType::U8 && e->shape == Shape{rows, row_bytes},
                path + ": tensor '" + name + ".ggml' is " + dtype_name(e->dtype) + " " + shape_to_string(e->shape) + ", expected U8 " +
                    shape_to_string({rows, row_bytes}));
        const Tensor t = f.tensor(name + ".ggml");
        c.ggml = std::make_shared<const GgmlMatrix>(GgmlMatrix::from_blocks(ti->id, rows, cols, t.data<uint8_t>(), where));
        c.method = d.value("method", "");
        s.quantized[name] = std::move(c);
        continue;
      }
      q.rows = json_io::get_int(d, "rows", where, 1, kMaxDim);
      q.cols = json_io::get_int(d, "cols", where, 1, kMaxDim);
      q.fmt.bits = int(json_io::get_int(d, "bits", where, 1, 8));
      q.fmt.group = int(json_io::get_int(d, "group", where, 0, kMaxDim));
      q.fmt.symmetric = d.at("symmetric").get<bool>();
      q.fmt.ternary = d.at("ternary").get<bool>();
      q.fmt.scale_dtype = d.at("scale_dtype").get<std::string>() == "f16" ? DType::F16 : DType::F32;
      q.fmt.validate(q.rows, q.cols);
      require(q.fmt.group % 32 == 0, path + ": tensor '" + name + "' has group " + std::to_string(q.fmt.group) + " (a multiple of 32 or 0)");
      c.method = d.value("method", "");
      const int64_t ng = q.groups_per_row();
      const auto part = [&](const std::string& suffix, DType dt, Shape shape) {
        parts.insert(name + suffix);
        const auto* e = f.find(name + suffix);
        require(e != nullptr, path + ": tensor '" + name + suffix + "' missing");
        require(e->dtype == dt && e->shape == shape, path + ": tensor '" + name + suffix + "' is " + dtype_name(e->dtype) + " " +
                                                         shape_to_string(e->shape) + ", expected " + dtype_name(dt) + " " + shape_to_string(shape));
        return f.tensor(name + suffix);
      };
      const Tensor codes = part(".qweight", DType::U8, {q.rows, int64_t(q.packed_row_bytes())});
      q.codes.assign(codes.data<uint8_t>(), codes.data<uint8_t>() + codes.numel());
      const Tensor sc = part(".scales", q.fmt.scale_dtype, {q.rows, ng}).to(DType::F32);
      q.scales.assign(sc.data<float>(), sc.data<float>() + sc.numel());
      for (float v : q.scales) require(std::isfinite(v), path + ": tensor '" + name + ".scales' holds a non-finite scale");
      if (!q.fmt.symmetric && !q.fmt.ternary) {
        const auto* ze = f.find(name + ".zeros");
        const bool f32_zeros = ze != nullptr && ze->dtype == DType::F32;  // fractional zero points
        const Tensor z = part(".zeros", f32_zeros ? DType::F32 : DType::U8, {q.rows, ng});
        const int zmax = 1 << q.fmt.bits;  // 2^bits: a GPTQ v1 checkpoint's wrapped zero of 0, as AutoGPTQ reads it
        for (int64_t i = 0; i < z.numel(); ++i) {
          const float v = f32_zeros ? z.data<float>()[i] : float(z.data<uint8_t>()[i]);
          require(f32_zeros ? std::isfinite(v) : v <= float(zmax),
                  path + ": tensor '" + name + ".zeros' has a zero point " + (f32_zeros ? "that is not finite" : "above the code range"));
          q.zeros.push_back(v);
        }
      }
      if (d.value("input_scale", false)) {
        const Tensor t = part(".input_scale", DType::F32, {q.cols});
        c.input_scale.assign(t.data<float>(), t.data<float>() + q.cols);
        for (float v : c.input_scale) require(std::isfinite(v) && v > 0, path + ": tensor '" + name + ".input_scale' must be positive");
      }
      const int64_t k = json_io::get_int(d, "outliers", where, 0, kMaxDim, 0);
      if (d.value("input_perm", false)) {
        require(c.input_scale.empty() && k == 0, path + ": tensor '" + name + "' has an input permutation with input scales or outliers");
        const Tensor t = part(".input_perm", DType::I32, {q.cols});
        c.input_perm.assign(t.data<int32_t>(), t.data<int32_t>() + q.cols);
        std::vector<uint8_t> seen(size_t(q.cols), 0);
        for (int32_t v : c.input_perm) {
          require(v >= 0 && v < q.cols && !seen[size_t(v)], path + ": tensor '" + name + ".input_perm' is not a permutation of the inputs");
          seen[size_t(v)] = 1;
        }
      }
      if (k > 0) {
        require(k < q.cols, path + ": tensor '" + name + "' has too many outliers");
        const Tensor idx = part(".outlier_cols", DType::I32, {k});
        c.outlier_cols.assign(idx.data<int32_t>(), idx.data<int32_t>() + k);
        for (int32_t v : c.outlier_cols) require(v >= 0 && v < q.cols, path + ": tensor '" + name + ".outlier_cols' out of range");
        const Tensor ow = part(".outlier_weight", DType::F16, {q.rows, k}).to(DType::F32);
        c.outlier_w.assign(ow.data<float>(), ow.data<float>() + ow.numel());
      }
      c.rank = json_io::get_int(d, "rank", where, 0, kMaxDim, 0);
      if (c.rank > 0) {
        require(c.rank < std::min(q.rows, q.cols), path + ": tensor '" + name + "' has rank " + std::to_string(c.rank) + " too large");
        const Tensor l = part(".lora_l", DType::F32, {q.rows, c.rank}), r = part(".lora_r", DType::F32, {c.rank, q.cols});
        c.lora_l.assign(l.data<float>(), l.data<float>() + l.numel());
        c.lora_r.assign(r.data<float>(), r.data<float>() + r.numel());
      }
      s.quantized[name] = std::move(c);
    }
    for (const auto& e : f.tensors()) {
      if (parts.count(e.name) || e.name == "tokenizer.bin" || e.name == "tokenizer.json" || e.name == "tokenizer.wordpiece.json") continue;
      Tensor t = f.tensor(e.name);
      require(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
              path + ": tensor '" + e.name + "' has dtype " + dtype_name(t.dtype()) + " (dense tensors are f32, f16 or bf16)");
      s.tensors[e.name] = t.dtype() == DType::F32 ? t : t.to(DType::F32);
    }
    if (const std::string* cfg = meta("tensorzip.config")) {
      const json c = json_io::parse(*cfg, path + " (metadata tensorzip.config)");
      require(c.is_object(), path + ": metadata tensorzip.config is not a JSON object");
      const std::string arch = c.value("architecture", "");
      require(is_llama_architecture(arch), path + ": architecture '" + arch + "' is not supported (" + kLlamaArchitectures + ")");
      s.cfg.arch = arch;
      const auto integer = [&](const char* key) { return int(json_io::get_int(c, key, path + ": config", 1, (int64_t(1) << 24) - 1)); };
      s.cfg.dim = integer("dim");
      s.cfg.hidden_dim = integer("hidden_dim");
      s.cfg.n_layers = integer("n_layers");
      s.cfg.n_heads = integer("n_heads");
      s.cfg.n_kv_heads = integer("n_kv_heads");
      s.cfg.vocab_size = integer("vocab_size");
      s.cfg.seq_len = integer("seq_len");
      s.cfg.norm_eps = float(json_io::get_number(c, "norm_eps", path + ": config", 1e-30, 1.0, 1e-5));
      s.cfg.rope_theta = float(json_io::get_number(c, "rope_theta", path + ": config", 1e-6, 1e30, 10000.0));
      s.cfg.rope_freq_scale = float(json_io::get_number(c, "rope_freq_scale", path + ": config", 1e-6, 1e6, 1.0));
      const std::string where = path + ": config";
      const auto flag = [&](const char* key, bool def) {
        if (!c.contains(key)) return def;
        require(c[key].is_boolean(), where + ": '" + key + "' is not true or false");
        return c[key].get<bool>();
      };
      const auto word = [&](const char* key, const char* def, const char* other) {
        const std::string v = c.value(key, std::string(def));
        require(v == def || v == other, where + ": '" + key + "' = '" + v + "' (" + def + " or " + other + ")");
        return v == other;
      };
      s.cfg.head_dim = int(json_io::get_int(c, "head_dim", where, 0, 1 << 16, 0));
      s.cfg.rope_style = word("rope_style", "adjacent", "half_split") ? RopeStyle::HalfSplit : RopeStyle::Adjacent;
      s.cfg.pre_norms = flag("pre_norms", true);
      s.cfg.post_norms = flag("post_norms", false);
      s.cfg.qkv_bias = flag("qkv_bias", false);
      s.cfg.qk_norm = flag("qk_norm", false);
      s.cfg.qk_norm_per_head = flag("qk_norm_per_head", false);
      s.cfg.ffn_act = word("ffn_act", "silu", "gelu_tanh") ? FfnActivation::GeluTanh : FfnActivation::SiLU;
      s.cfg.embed_scale = float(json_io::get_number(c, "embed_scale", where, 0, 1e6, 1.0));
      s.cfg.attn_softcap = float(json_io::get_number(c, "attn_softcap", where, 0, 1e6, 0.0));
      s.cfg.final_softcap = float(json_io::get_number(c, "final_softcap", where, 0, 1e6, 0.0));
      s.cfg.attn_scale = float(json_io::get_number(c, "attn_scale", where, 0, 1e6, 0.0));
      s.cfg.sliding_window = int(json_io::get_int(c, "sliding_window", where, 0, (int64_t(1) << 24) - 1, 0));
      s.cfg.sliding_even_layers = flag("sliding_even_layers", false);
    }
    if (const auto* e = f.find("tokenizer.bin")) {
      require(e->dtype == DType::U8, path + ": tensor 'tokenizer.bin' must be U8");
      const json t = json_io::parse(meta("tensorzip.tokenizer") ? *meta("tensorzip.tokenizer") : std::string("{}"), path + " (metadata tensorzip.tokenizer)");
      require(t.is_object(), path + ": metadata tensorzip.tokenizer is not a JSON object");
      Tokenizer::Settings st;
      st.space = t.value("space", std::string(" "));
      st.dummy_prefix = t.value("dummy_prefix", true);
      st.bos = int(json_io::get_int(t, "bos", path + ": tokenizer", 0, (int64_t(1) << 24) - 1, 1));
      st.eos = int(json_io::get_int(t, "eos", path + ": tokenizer", 0, (int64_t(1) << 24) - 1, 2));
      const Tensor tb = f.tensor("tokenizer.bin");
      s.tokenizer = Tokenizer::from_llama2c_bytes(tb.data<uint8_t>(), size_t(tb.numel()), path + " (tokenizer.bin)", st);
    }
    if (f.find("tokenizer.wordpiece.json"))
      s.tokenizer = Tokenizer::from_wordpiece_json(tensor_text(f, "tokenizer.wordpiece.json"), path + " (tokenizer.wordpiece.json)");
    if (f.find("tokenizer.json")) s.tokenizer = Tokenizer::parse_hf_json(tensor_text(f, "tokenizer.json"), path + " (tokenizer.json)");
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed tensorzip metadata (" + e.what() + ")");
  }
  if (const std::string* t = meta("tensorzip.chat_template")) s.chat_template = *t;
  if (s.cfg.dim > 0) s.validate();
  return s;
}

}  // namespace tz
