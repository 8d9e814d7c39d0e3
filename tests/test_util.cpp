#include <cmath>
#include "tests/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "tensorzip/convert.h"

namespace tz::test {

double rel_l2(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double d = double(y[i]) - double(ref[i]);
    num += std::isfinite(d) ? d * d : INFINITY;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double max_rel_err(const std::vector<float>& y, const std::vector<float>& ref) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    scale = std::max(scale, std::fabs(double(ref[i])));
    err = std::max(err, std::isfinite(y[i]) ? std::fabs(double(y[i]) - double(ref[i])) : INFINITY);
  }
  return scale > 0 ? err / scale : err;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

LoraAdapter random_lora(int64_t out, int64_t in, int64_t rank, float alpha, uint32_t seed, float stddev) {
  LoraAdapter a;
  a.rank = rank;
  a.alpha = alpha;
  a.a = random_floats(size_t(rank * in), seed, stddev);
  a.b = random_floats(size_t(out * rank), seed + 1, stddev);
  return a;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16_scalar(v[i]);
  return out;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx})
    if (int(i) <= int(cpu_info().max_isa)) out.push_back(i);
  return out;
}

namespace {
struct TempRoot {
  std::filesystem::path root;
  TempRoot() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tensorzip-test-XXXXXX").string();
    root = mkdtemp(tmpl.data());
  }
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};
}  // namespace

std::string temp_dir() {
  static TempRoot root;
  static int counter = 0;
  auto p = root.root / std::to_string(counter++);
  std::filesystem::create_directories(p);
  return p.string();
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

CliResult run_cli(const std::string& args, const std::string& env) {
  const std::string dir = temp_dir();
  const std::string out = dir + "/out", err = dir + "/err";
  const std::string cmd = env + " " + TZ_CLI_PATH + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  const auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

std::string fixtures_dir() { return TZ_SHARED_FIXTURES; }

std::string models_dir() {
  const std::string d = TZ_SHARED_MODELS;
  return std::filesystem::exists(d + "/stories260K/stories260K.bin") ? d : "";
}

}  // namespace tz::test

#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/tensor.h"

namespace tz::test {

std::vector<uint8_t> sample_safetensors() {
  Tensor a = Tensor::empty(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) a.data<float>()[i] = float(i) - 2.5f;
  Tensor b = Tensor::empty(DType::BF16, {4});
  for (int i = 0; i < 4; ++i) b.data<uint16_t>()[i] = f32_to_bf16_scalar(float(i) * 0.5f);
  Tensor c = Tensor::empty(DType::I8, {3});
  for (int i = 0; i < 3; ++i) c.data<int8_t>()[i] = int8_t(i - 1);
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("tensorzip.test", "yes");
  w.add("layer.weight", a);
  w.add("layer.bias", b);
  w.add("codes", c);
  const std::string path = temp_dir() + "/sample.safetensors";
  w.write(path);
  return read_file(path);
}

std::vector<uint8_t> sample_gguf() {
  io::GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.add("test.i8", {io::GgufType::I8, io::GgufType::U8, {int64_t(-3)}});
  w.add("test.u16", {io::GgufType::U16, io::GgufType::U8, {uint64_t(65535)}});
  w.add("test.i64", {io::GgufType::I64, io::GgufType::U8, {int64_t(-1234567890123)}});
  w.add("test.f64", {io::GgufType::F64, io::GgufType::U8, {2.5}});
  w.add("test.bool", {io::GgufType::BOOL, io::GgufType::U8, {true}});
  w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "hello"});
  w.add("tokenizer.ggml.scores", {io::GgufType::ARRAY, io::GgufType::F32, {0.0, -1.0, -2.0, -3.5}});
  const auto vals = random_floats(64, 17);
  std::vector<uint8_t> f32(64 * 4), f16(64 * 2), bf(64 * 2), q8(2 * io::kQ8_0BlockBytes), q4(2 * io::kQ4_0BlockBytes);
  std::memcpy(f32.data(), vals.data(), f32.size());
  for (size_t i = 0; i < 64; ++i) {
    const uint16_t h = f32_to_f16_scalar(vals[i]), b = f32_to_bf16_scalar(vals[i]);
    std::memcpy(&f16[i * 2], &h, 2);
    std::memcpy(&bf[i * 2], &b, 2);
  }
  io::quantize_q8_0(vals.data(), q8.data(), 64);
  io::quantize_q4_0(vals.data(), q4.data(), 64);
  w.add_tensor("t.f32", io::kGgmlF32, {2, 32}, f32);
  w.add_tensor("t.f16", io::kGgmlF16, {64}, f16);
  w.add_tensor("t.bf16", io::kGgmlBF16, {4, 16}, bf);
  w.add_tensor("t.q8_0", io::kGgmlQ8_0, {2, 32}, q8);
  w.add_tensor("t.q4_0", io::kGgmlQ4_0, {1, 64}, q4);
  return w.serialize();
}

std::vector<uint8_t> sample_llama2c(int version, bool shared) {
  const int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 16, seq = 4;
  const int64_t kv = dim / heads * kv_heads;
  int64_t n = vocab * dim + layers * (2 * dim + dim * dim * 2 + 2 * kv * dim + 3 * hidden * dim) + dim;
  if (version == 0) n += 2 * seq * (dim / heads / 2);
  if (!shared) n += vocab * dim;
  std::vector<uint8_t> out;
  auto put = [&](const void* p, size_t b) { out.insert(out.end(), (const uint8_t*)p, (const uint8_t*)p + b); };
  if (version == 1) {
    const uint32_t magic = 0x616b3432;
    const int32_t v = 1;
    put(&magic, 4);
    put(&v, 4);
  }
  const int32_t vocab_field = version == 0 && !shared ? -vocab : vocab;
  for (int32_t h : {dim, hidden, layers, heads, kv_heads, vocab_field, seq}) put(&h, 4);
  if (version == 1) {
    const uint8_t s = shared ? 1 : 0;
    put(&s, 1);
    out.resize(256, 0);
  }
  for (int64_t i = 0; i < n; ++i) {
    const float f = float(i) * 0.001f;
    put(&f, 4);
  }
  return out;
}

std::vector<uint8_t> sample_tokenizer_bin() {
  std::vector<uint8_t> tok;
  const auto put32 = [&](const void* p) {
    tok.resize(tok.size() + 4);
    std::memcpy(tok.data() + tok.size() - 4, p, 4);
  };
  const int32_t max_len = 8;
  put32(&max_len);
  float score = 0.f;
  for (const std::string piece : {"<unk>", "<s>", "</s>", "<0x41>", " ", "O", "n", "c", "e", "On", "ce", " On", "Once", "a", "b", " a"}) {
    const int32_t len = int32_t(piece.size());
    put32(&score);
    put32(&len);
    for (char ch : piece) tok.push_back(static_cast<uint8_t>(ch));
    score -= 1.f;
  }
  return tok;
}

}  // namespace tz::test

#include <nlohmann/json.hpp>
#include <span>

#include "tensorzip/io/hf_quant.h"
#include "tensorzip/llama.h"

namespace tz::test {

void write_hf_dir(const LlamaSource& s, const std::string& dir, bool bf16) {
  const LlamaConfig& c = s.cfg;
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {{"model_type", c.arch}, {"hidden_size", c.dim}, {"intermediate_size", c.hidden_dim},
                        {"num_hidden_layers", c.n_layers}, {"num_attention_heads", c.n_heads}, {"num_key_value_heads", c.n_kv_heads},
                        {"vocab_size", c.vocab_size}, {"max_position_embeddings", c.seq_len}, {"rms_norm_eps", c.norm_eps},
                        {"rope_theta", c.rope_theta}, {"tie_word_embeddings", s.tied()}};
  if (c.arch == "phi3") cfg["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json();
  if (c.arch == "qwen2") cfg["use_sliding_window"] = false;
  if (c.arch == "gemma2") {
    cfg["head_dim"] = c.head_size();
    cfg["query_pre_attn_scalar"] = c.head_size();
    cfg["sliding_window"] = c.sliding_window;
    cfg["attn_logit_softcapping"] = c.attn_softcap;
    cfg["final_logit_softcapping"] = c.final_softcap;
    cfg["hidden_activation"] = "gelu_pytorch_tanh";
  }
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  std::vector<Tensor> keep;
  io::SafetensorsWriter w;
  const auto put = [&](const std::string& hf, const Tensor& t, int rotary_heads = 0) {
    Tensor v = t.clone();
    if (rotary_heads > 0 && c.rope_style == RopeStyle::Adjacent) {  // Meta's row (h, 2j + i) is HF's (h, i, j)
      const int64_t rows = t.dim(0), cols = t.dim(1), hs = rows / rotary_heads;
      for (int64_t h = 0; h < rotary_heads; ++h)
        for (int64_t j = 0; j < hs / 2; ++j)
          for (int64_t i = 0; i < 2; ++i)
            std::memcpy(v.data<float>() + (h * hs + i * hs / 2 + j) * cols, t.data<float>() + (h * hs + 2 * j + i) * cols, size_t(cols) * 4);
    }
    if (c.arch == "gemma2" && hf.ends_with("norm.weight"))  // Gemma stores w of (1 + w); GGUF the sum
      for (float& x : std::span(v.data<float>(), size_t(v.numel()))) x -= 1.f;
    keep.push_back(bf16 ? v.to(DType::BF16) : v);
    w.add(hf, keep.back());
  };
  const auto cat_rows = [&](std::initializer_list<std::string> names) {
    int64_t rows = 0, cols = 0;
    for (const auto& n : names) rows += s.get(n).dim(0), cols = s.get(n).dim(1);
    Tensor t = Tensor::empty(DType::F32, {rows, cols});
    int64_t r0 = 0;
    for (const auto& n : names) {
      std::memcpy(t.data<float>() + r0 * cols, s.get(n).data<float>(), size_t(s.get(n).numel()) * 4);
      r0 += s.get(n).dim(0);
    }
    return t;
  };
  put("model.embed_tokens.weight", s.get("tok_embeddings"));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
    if (c.arch == "gemma2") {
      put(h + "input_layernorm.weight", s.get(p + "attention_norm"));
      put(h + "post_attention_layernorm.weight", s.get(p + "post_attention_norm"));
      put(h + "pre_feedforward_layernorm.weight", s.get(p + "ffn_norm"));
      put(h + "post_feedforward_layernorm.weight", s.get(p + "post_ffn_norm"));
    } else if (c.pre_norms) {
      put(h + "input_layernorm.weight", s.get(p + "attention_norm"));
      put(h + "post_attention_layernorm.weight", s.get(p + "ffn_norm"));
    } else {
      put(h + "post_attention_layernorm.weight", s.get(p + "post_attention_norm"));
      put(h + "post_feedforward_layernorm.weight", s.get(p + "post_ffn_norm"));
    }
    if (c.arch == "phi3") {
      put(h + "self_attn.qkv_proj.weight", cat_rows({p + "attention.wq", p + "attention.wk", p + "attention.wv"}));
      put(h + "mlp.gate_up_proj.weight", cat_rows({p + "feed_forward.w1", p + "feed_forward.w3"}));
    } else {
      put(h + "self_attn.q_proj.weight", s.get(p + "attention.wq"), c.n_heads);
      put(h + "self_attn.k_proj.weight", s.get(p + "attention.wk"), c.n_kv_heads);
      put(h + "self_attn.v_proj.weight", s.get(p + "attention.wv"));
      put(h + "mlp.gate_proj.weight", s.get(p + "feed_forward.w1"));
      put(h + "mlp.up_proj.weight", s.get(p + "feed_forward.w3"));
    }
    put(h + "self_attn.o_proj.weight", s.get(p + "attention.wo"));
    put(h + "mlp.down_proj.weight", s.get(p + "feed_forward.w2"));
    if (c.qkv_bias)
      for (const char* b : {"q", "k", "v"}) put(h + "self_attn." + b + "_proj.bias", s.get(p + "attention.b" + b));
    if (c.qk_norm)
      for (const char* b : {"q", "k"}) put(h + "self_attn." + b + "_norm.weight", s.get(p + "attention." + b + "_norm"));
  }
  put("model.norm.weight", s.get("norm"));
  if (!s.tied()) put("lm_head.weight", s.get("output"));
  w.write(dir + "/model.safetensors");
}

HfQuantRewrite write_hf_quantized_dir(const std::string& dense_dir, const std::string& qdir, const std::string& ref_dir, const std::string& qconfig,
                            bool act_order, uint32_t seed) {
  const io::HfQuantConfig qc = io::parse_hf_quant_config(qconfig, "test");
  const bool awq = qc.method == io::HfQuantConfig::Method::Awq;
  std::filesystem::create_directories(qdir);
  std::filesystem::create_directories(ref_dir);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dense_dir + "/config.json"));
  std::ofstream(ref_dir + "/config.json") << cfg.dump();
  cfg["quantization_config"] = nlohmann::json::parse(qconfig);
  std::ofstream(qdir + "/config.json") << cfg.dump();
  const auto f = io::SafetensorsFile::open(dense_dir + "/model.safetensors");
  io::SafetensorsWriter wq, wr;
  std::vector<Tensor> keep;
  std::mt19937 rng(seed);
  HfQuantRewrite out;
  for (const auto& e : f.tensors()) {
    const Tensor t = f.tensor(e.name);
    const bool proj = e.name.ends_with("_proj.weight") && t.ndim() == 2;
    const int64_t rows = proj ? t.dim(0) : 0, cols = proj ? t.dim(1) : 0, group = qc.group == 0 ? cols : qc.group;
    const bool fits = proj && (awq ? rows % 8 == 0 && cols % group == 0 : rows * qc.bits % 32 == 0 && cols * qc.bits % 32 == 0);
    if (!fits) {
      keep.push_back(t);
      wq.add(e.name, keep.back());
      wr.add(e.name, keep.back());
      out.dense += proj;
      continue;
    }
    QuantFormat fmt;
    fmt.bits = qc.bits;
    fmt.group = qc.group;
    fmt.symmetric = false;
    fmt.scale_dtype = DType::F16;
    // Act-order: the inputs in a random order, quantized in that order (column j of q is input perm[j]).
    std::vector<int32_t> perm;
    std::vector<float> w(t.data<float>(), t.data<float>() + rows * cols);
    if (act_order) {
      perm.resize(size_t(cols));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) w[size_t(r * cols + j)] = t.data<float>()[r * cols + perm[size_t(j)]];
    }
    QuantMatrix q = quantize_rtn_ref(w.data(), rows, cols, fmt);
    if (qc.sym && !awq) {  // GPTQ sym: zero 2^(bits−1), scale 2·max|w| / (2^bits − 1) per group
      const int64_t gs = fmt.group_size(cols), ng = q.groups_per_row(), maxq = (int64_t(1) << qc.bits) - 1;
      std::vector<uint8_t> codes(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < ng; ++g) {
          float amax = 0;
          for (int64_t j = g * gs; j < std::min(cols, (g + 1) * gs); ++j) amax = std::max(amax, std::fabs(w[size_t(r * cols + j)]));
          const float sc = f16_to_f32_scalar(f32_to_f16_scalar(std::max(2 * amax / float(maxq), 1e-8f))), z = float((maxq + 1) / 2);
          q.scales[size_t(r * ng + g)] = sc;
          q.zeros[size_t(r * ng + g)] = z;
          for (int64_t j = g * gs; j < std::min(cols, (g + 1) * gs); ++j)
            codes[size_t(j)] = uint8_t(std::clamp(std::nearbyint(w[size_t(r * cols + j)] / sc) + z, 0.f, float(maxq)));
        }
        pack_codes_ref(codes.data(), cols, qc.bits, q.codes.data() + size_t(r) * q.packed_row_bytes());
      }
    }
    if (qc.zeros_minus_one)  // v1 cannot store a zero of 0 (AutoGPTQ's packer would overflow)
      for (float& z : q.zeros) z = std::max(z, 1.f);
    if (!act_order) out.codes[e.name] = q;
    const std::string base = e.name.substr(0, e.name.size() - 7);
    const io::HfQuantTensors p = io::pack_hf_quant(qc, q, perm);
    for (const auto& [suffix, tensor] : {std::pair{".qweight", p.qweight}, std::pair{".qzeros", p.qzeros}, std::pair{".scales", p.scales},
                                         std::pair{".g_idx", p.g_idx}})
      if (tensor.defined() && tensor.numel() > 0) {
        keep.push_back(tensor);
        wq.add(base + suffix, keep.back());
      }
    dequantize_ref(q, w.data());
    Tensor d = Tensor::empty(DType::F32, {rows, cols});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) d.data<float>()[r * cols + (perm.empty() ? j : perm[size_t(j)])] = w[size_t(r * cols + j)];
    keep.push_back(d);
    wr.add(e.name, keep.back());
    ++out.quantized;
  }
  wq.write(qdir + "/model.safetensors");
  wr.write(ref_dir + "/model.safetensors");
  return out;
}

}  // namespace tz::test
