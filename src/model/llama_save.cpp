// LlamaSource -> llama.cpp GGUF (the layout load_gguf_llama reads, and llama.cpp's own).
#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/llama.h"

namespace tz {
namespace {

bool writable(uint32_t type) {
  return type == io::kGgmlF32 || type == io::kGgmlF16 || type == io::kGgmlBF16 || io::ggml_quantize_supported(type);
}

std::string type_name(uint32_t type) {
  const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
  return ti ? ti->name : "type " + std::to_string(type);
}

std::vector<uint8_t> encode_tensor(const Tensor& t, uint32_t type) {
  const size_t n = size_t(t.numel());
  const float* p = t.data<float>();
  std::vector<uint8_t> out;
  switch (type) {
    case io::kGgmlF32:
      out.resize(n * 4);
      std::memcpy(out.data(), p, n * 4);
      break;
    case io::kGgmlF16:
    case io::kGgmlBF16: {
      std::vector<uint16_t> h(n);
      if (type == io::kGgmlF16) f32_to_f16(p, h.data(), n);
      else f32_to_bf16(p, h.data(), n);
      out.resize(n * 2);
      std::memcpy(out.data(), h.data(), n * 2);
      break;
    }
    default: {
      const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
      out.resize(n / ti->block_values * ti->block_bytes);
      io::quantize_ggml(type, p, out.data(), n);
    }
  }
  return out;
}

// ‖decode(bytes) − t‖ / ‖t‖.
double added_error(const Tensor& t, uint32_t type, const std::vector<uint8_t>& bytes) {
  if (type == io::kGgmlF32) return 0;
  const size_t n = size_t(t.numel());
  std::vector<float> y(n);
  if (type == io::kGgmlF16 || type == io::kGgmlBF16) {
    std::vector<uint16_t> h(n);
    std::memcpy(h.data(), bytes.data(), n * 2);
    if (type == io::kGgmlF16) f16_to_f32(h.data(), y.data(), n);
    else bf16_to_f32(h.data(), y.data(), n);
  } else {
    io::dequantize_ggml(type, bytes.data(), y.data(), n);
  }
  double num = 0, den = 0;
  const float* x = t.data<float>();
  for (size_t i = 0; i < n; ++i) num += double(y[i] - x[i]) * (y[i] - x[i]), den += double(x[i]) * x[i];
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

// The blocks of `type` holding c's codes as they are, when they fit its grid: 4-, 5- or 8-bit codes
// in groups of whole 32-value blocks with f16 scales, zero points 8 / 16 / 128 for q4_0 / q5_0 /
// q8_0 (GPTQ sym) or any integer for q4_1 / q5_1 (AWQ, GPTQ asym: m = −s·z, rounded to f16); no
// input permutation, scales, outliers or low-rank part. Empty otherwise.
std::vector<uint8_t> codes_as_blocks(const CompressedLinear& c, uint32_t type) {
  const int bits = io::ggml_code_block_bits(type);
  const QuantMatrix& q = c.q;
  if (bits == 0 || c.ggml || q.codes.empty() || q.fmt.bits != bits || q.fmt.ternary || q.fmt.symmetric || !c.input_perm.empty() ||
      !c.input_scale.empty() || !c.outlier_cols.empty() || c.rank > 0 || q.cols % 32 != 0 || q.fmt.group_size(q.cols) % 32 != 0)
    return {};
  const bool with_min = type == io::kGgmlQ4_1 || type == io::kGgmlQ5_1;
  const float fixed_zero = float(1 << (bits - 1));
  for (size_t i = 0; i < q.scales.size(); ++i)
    if (f16_to_f32_scalar(f32_to_f16_scalar(q.scales[i])) != q.scales[i] || (!with_min && q.zeros[i] != fixed_zero)) return {};
  const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
  const int64_t gs = q.fmt.group_size(q.cols), ng = q.groups_per_row(), blocks = q.cols / 32;
  std::vector<uint8_t> out(size_t(q.rows * blocks) * ti->block_bytes), codes(static_cast<size_t>(q.cols));
  for (int64_t r = 0; r < q.rows; ++r) {
    unpack_codes_ref(q.codes.data() + size_t(r) * q.packed_row_bytes(), q.cols, bits, codes.data());
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t g = r * ng + b * 32 / gs;
      const float s = q.scales[size_t(g)];
      io::encode_ggml_codes(type, codes.data() + b * 32, s, -s * q.zeros[size_t(g)], out.data() + size_t(r * blocks + b) * ti->block_bytes);
    }
  }
  return out;
}

// The matrices written, in file order: (source name, GGUF name).
std::vector<std::pair<std::string, std::string>> gguf_matrices(const LlamaSource& src) {
  std::vector<std::pair<std::string, std::string>> m = {{"tok_embeddings", "token_embd.weight"}};
  for (int l = 0; l < src.cfg.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
    for (auto [a, b] : {std::pair{"attention.wq", "attn_q"}, {"attention.wk", "attn_k"}, {"attention.wv", "attn_v"},
                        {"attention.wo", "attn_output"}, {"feed_forward.w1", "ffn_gate"}, {"feed_forward.w2", "ffn_down"},
                        {"feed_forward.w3", "ffn_up"}})
      m.emplace_back(p + a, g + b + ".weight");
  }
  if (!src.tied()) m.emplace_back("output", "output.weight");
  return m;
}

}  // namespace

uint32_t gguf_fallback_type(uint32_t t, int64_t cols) {
  const io::GgmlTypeInfo* ti = io::ggml_type_info(t);
  if (ti == nullptr || cols % ti->block_values == 0) return t;
  uint32_t f = io::kGgmlF16;  // llama-quantize's last resort; the 32-value types have no other
  switch (t) {
    case io::kGgmlTQ1_0: case io::kGgmlTQ2_0: f = io::kGgmlQ4_0; break;
    case io::kGgmlQ2_K: case io::kGgmlQ3_K: case io::kGgmlIQ4_XS: f = io::kGgmlIQ4_NL; break;
    case io::kGgmlQ4_K: f = io::kGgmlQ5_0; break;
    case io::kGgmlQ5_K: f = io::kGgmlQ5_1; break;
    case io::kGgmlQ6_K: f = io::kGgmlQ8_0; break;
    default: break;
  }
  return cols % io::ggml_type_info(f)->block_values == 0 ? f : io::kGgmlF16;
}

void check_gguf_llama_export(const LlamaSource& src, const Tokenizer* tok, const GgufTypeOf& type_of) {
  require(src.cfg.plain_llama(), "GGUF export: " + src.label + " is a " + src.cfg.arch +
                                     " model (or has architecture switches); GGUF export writes the llama architecture only");
  require(tok != nullptr, "GGUF export: " + src.label + " has no tokenizer to write (give one with -z)");
  require(tok->kind() == Tokenizer::Kind::SentencePiece,
          "GGUF export: " + tok->label() + " is a " + (tok->kind() == Tokenizer::Kind::ByteBpe ? "byte-level BPE" : "WordPiece") +
              " tokenizer; GGUF export writes SentencePiece vocabularies only");
  for (const auto& [name, gguf_name] : gguf_matrices(src)) {
    require(src.has(name), "GGUF export: " + src.label + " has no tensor '" + name + "'");
    const uint32_t t = type_of(gguf_name);
    require(writable(t), "GGUF export: tensor '" + gguf_name + "': ggml type " + type_name(t) + " is not written by tensorzip");
  }
}

GgufWriteReport write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path, uint32_t ggml_type) {
  return write_gguf_llama(src, tok, path, [ggml_type](const std::string&) { return ggml_type; });
}

GgufWriteReport write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path, const GgufTypeOf& type_of,
                                 uint32_t file_type) {
  src.validate();
  check_gguf_llama_export(src, &tok, type_of);
  const LlamaConfig& c = src.cfg;
  io::GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", src.label);
  w.add_u32("llama.context_length", uint32_t(c.seq_len));
  w.add_u32("llama.embedding_length", uint32_t(c.dim));
  w.add_u32("llama.feed_forward_length", uint32_t(c.hidden_dim));
  w.add_u32("llama.block_count", uint32_t(c.n_layers));
  w.add_u32("llama.attention.head_count", uint32_t(c.n_heads));
  w.add_u32("llama.attention.head_count_kv", uint32_t(c.n_kv_heads));
  w.add_u32("llama.rope.dimension_count", uint32_t(c.head_size()));
  w.add_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  w.add_f32("llama.rope.freq_base", c.rope_theta);
  if (c.rope_freq_scale != 1.f) {
    w.add_string("llama.rope.scaling.type", "linear");
    w.add_f32("llama.rope.scaling.factor", 1.f / c.rope_freq_scale);
  }
  if (file_type == ~0u) {  // llama.cpp's LLAMA_FTYPE of the main type
    const uint32_t t = type_of("blk.0.attn_q.weight");
    file_type = t == io::kGgmlF32 ? 0 : t == io::kGgmlF16 ? 1 : t == io::kGgmlQ4_0 ? 2 : t == io::kGgmlQ4_1 ? 3 : t == io::kGgmlQ8_0 ? 7
              : t == io::kGgmlQ5_0 ? 8 : t == io::kGgmlQ5_1 ? 9 : t == io::kGgmlQ2_K ? 10 : t == io::kGgmlQ3_K ? 11 : t == io::kGgmlQ4_K ? 14
              : t == io::kGgmlQ5_K ? 16 : t == io::kGgmlQ6_K ? 18 : t == io::kGgmlIQ4_NL ? 25 : t == io::kGgmlIQ4_XS ? 30
              : t == io::kGgmlBF16 ? 32 : t == io::kGgmlTQ1_0 ? 36 : t == io::kGgmlTQ2_0 ? 37 : 0;
  }
  w.add_u32("general.file_type", file_type);
  // SentencePiece vocabulary with U+2581 spaces, as llama.cpp expects for model "llama".
  const std::string meta = "\xe2\x96\x81";
  std::vector<std::string> pieces;
  io::GgufValue scores{io::GgufType::ARRAY, io::GgufType::F32, {}}, types{io::GgufType::ARRAY, io::GgufType::I32, {}};
  for (int i = 0; i < tok.vocab_size(); ++i) {
    std::string p = tok.piece(i);
    if (tok.space_symbol() == " ") {
      std::string q;
      for (char ch : p) q += ch == ' ' ? meta : std::string(1, ch);
      p = q;
    }
    const bool byte = p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>';
    pieces.push_back(p);
    scores.items.emplace_back(double(tok.score(i)));
    // llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte.
    types.items.emplace_back(int64_t(i == 0 ? 2 : (i == tok.bos_id() || i == tok.eos_id()) ? 3 : byte ? 6 : 1));
  }
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", pieces);
  w.add("tokenizer.ggml.scores", std::move(scores));
  w.add("tokenizer.ggml.token_type", std::move(types));
  w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(tok.bos_id()));
  w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(tok.eos_id()));

  GgufWriteReport rep;
  int64_t values = 0;
  uint64_t bytes = 0;
  const auto add = [&](const std::string& gguf_name, uint32_t requested, uint32_t type, const Tensor& t, std::vector<uint8_t> data = {}) {
    const bool codes_kept = !data.empty();
    if (!codes_kept) data = encode_tensor(t, type);
    rep.tensors.push_back({gguf_name, type_name(requested), type_name(type), t.numel(), data.size(), added_error(t, type, data), codes_kept});
    rep.fallbacks += requested != type;
    values += t.numel();
    bytes += data.size();
    w.add_tensor(gguf_name, type, t.shape(), std::move(data));
  };
  const auto matrix = [&](const std::string& name, const std::string& gguf_name) {
    const Tensor t = src.dense(name);
    const uint32_t requested = type_of(gguf_name), type = gguf_fallback_type(requested, t.dim(-1));
    const auto q = src.quantized.find(name);
    add(gguf_name, requested, type, t, q == src.quantized.end() ? std::vector<uint8_t>{} : codes_as_blocks(q->second, type));
  };
  const auto vec = [&](const std::string& name, const std::string& gguf_name) { add(gguf_name, io::kGgmlF32, io::kGgmlF32, src.get(name)); };
  const auto matrices = gguf_matrices(src);
  size_t next = 0;
  matrix(matrices[next].first, matrices[next].second), ++next;  // token_embd
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
    vec(p + "attention_norm", g + "attn_norm.weight");
    for (int k = 0; k < 4; ++k, ++next) matrix(matrices[next].first, matrices[next].second);  // q, k, v, output
    vec(p + "ffn_norm", g + "ffn_norm.weight");
    for (int k = 0; k < 3; ++k, ++next) matrix(matrices[next].first, matrices[next].second);  // gate, down, up
  }
  vec("norm", "output_norm.weight");
  if (src.has("rope_freqs")) vec("rope_freqs", "rope_freqs.weight");  // Llama 3.1's per-pair rope factors
  if (next < matrices.size()) matrix(matrices[next].first, matrices[next].second);  // output
  rep.bits_per_weight = values > 0 ? double(bytes) * 8.0 / double(values) : 0.0;
  w.write(path);
  return rep;
}

}  // namespace tz
