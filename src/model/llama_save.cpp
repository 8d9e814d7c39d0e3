// LlamaSource -> llama.cpp GGUF (the layout load_gguf_llama reads, and llama.cpp's own).
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/llama.h"

namespace tz {
namespace {

std::vector<uint8_t> encode_tensor(const Tensor& t, uint32_t type, const std::string& name) {
  const size_t n = size_t(t.numel());
  const float* p = t.data<float>();
  std::vector<uint8_t> out;
  switch (type) {
    case io::kGgmlF32:
      out.resize(n * 4);
      std::memcpy(out.data(), p, n * 4);
      break;
    case io::kGgmlF16: {
      std::vector<uint16_t> h(n);
      f32_to_f16(p, h.data(), n);
      out.resize(n * 2);
      std::memcpy(out.data(), h.data(), n * 2);
      break;
    }
    default: {
      require(io::ggml_quantize_supported(type), "write_gguf_llama: ggml type " + std::to_string(type) + " is not written");
      const io::GgmlTypeInfo* ti = io::ggml_type_info(type);
      require(t.dim(-1) % ti->block_values == 0, "write_gguf_llama: tensor '" + name + "' has rows of " + std::to_string(t.dim(-1)) +
                                                     " values; " + ti->name + " needs multiples of " + std::to_string(ti->block_values) +
                                                     " (use f32, f16 or a 32-value type)");
      out.resize(n / ti->block_values * ti->block_bytes);
      io::quantize_ggml(type, p, out.data(), n);
    }
  }
  return out;
}

}  // namespace

void write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path, uint32_t ggml_type) {
  write_gguf_llama(src, tok, path, [ggml_type](const std::string&) { return ggml_type; });
}

void write_gguf_llama(const LlamaSource& src, const Tokenizer& tok, const std::string& path,
                      const std::function<uint32_t(const std::string& gguf_name)>& type_of, uint32_t file_type) {
  src.validate();
  require(src.cfg.plain_llama(), "write_gguf_llama: " + src.label + " is a " + src.cfg.arch +
                                     " model (or has architecture switches); GGUF export writes the llama architecture only");
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
              : t == io::kGgmlQ5_0 ? 8 : t == io::kGgmlQ5_1 ? 9 : t == io::kGgmlQ2_K ? 10 : t == io::kGgmlQ4_K ? 14 : t == io::kGgmlQ5_K ? 16
              : t == io::kGgmlQ6_K ? 18 : t == io::kGgmlIQ4_NL ? 25 : t == io::kGgmlIQ4_XS ? 30 : 0;
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

  const auto matrix = [&](const std::string& name, const std::string& gguf_name) {
    const Tensor t = src.dense(name);
    const uint32_t type = type_of(gguf_name);
    w.add_tensor(gguf_name, type, t.shape(), encode_tensor(t, type, gguf_name));
  };
  const auto vec = [&](const std::string& name, const std::string& gguf_name) {
    const Tensor& t = src.get(name);
    w.add_tensor(gguf_name, io::kGgmlF32, t.shape(), encode_tensor(t, io::kGgmlF32, gguf_name));
  };
  matrix("tok_embeddings", "token_embd.weight");
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
    vec(p + "attention_norm", g + "attn_norm.weight");
    matrix(p + "attention.wq", g + "attn_q.weight");
    matrix(p + "attention.wk", g + "attn_k.weight");
    matrix(p + "attention.wv", g + "attn_v.weight");
    matrix(p + "attention.wo", g + "attn_output.weight");
    vec(p + "ffn_norm", g + "ffn_norm.weight");
    matrix(p + "feed_forward.w1", g + "ffn_gate.weight");
    matrix(p + "feed_forward.w2", g + "ffn_down.weight");
    matrix(p + "feed_forward.w3", g + "ffn_up.weight");
  }
  vec("norm", "output_norm.weight");
  if (src.has("rope_freqs")) vec("rope_freqs", "rope_freqs.weight");  // Llama 3.1's per-pair rope factors
  if (!src.tied()) matrix("output", "output.weight");
  w.write(path);
}

}  // namespace tz
