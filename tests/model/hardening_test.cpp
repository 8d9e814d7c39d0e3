// Regression tests for the library half of issue 23 (what a newcomer and a hostile input hit):
// the sampler on non-finite logits and tiny temperatures, config and metadata validation (nesting,
// floats where integers belong, non-finite hyper-parameters, tensors the config does not account
// for), NaN weights, unmatched globs, diverging tuning, PEFT adapters that disagree with their
// config, and the KV cache sized by use.
#include <gtest/gtest.h>

#include <tuple>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tensorzip/compress.h"
#include "tensorzip/error.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/memory.h"
#include "tests/test_util.h"

namespace tz {
namespace {

// The message of the tz::Error `fn` throws ("" when it does not throw).
template <class Fn> std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const LlamaConfig kTiny{32, 64, 2, 2, 1, 16, 512};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A Hugging Face directory for `src` (names as transformers writes them), config as given.
void write_hf_dir(const std::string& dir, const LlamaSource& src, const nlohmann::json& config, int extra_layers = 0) {
  std::filesystem::create_directories(dir);
  write_text(dir + "/config.json", config.dump());
  io::SafetensorsWriter w;
  const std::pair<const char*, const char*> names[] = {
      {"input_layernorm", "attention_norm"}, {"self_attn.q_proj", "attention.wq"}, {"self_attn.k_proj", "attention.wk"},
      {"self_attn.v_proj", "attention.wv"}, {"self_attn.o_proj", "attention.wo"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "feed_forward.w1"}, {"mlp.down_proj", "feed_forward.w2"}, {"mlp.up_proj", "feed_forward.w3"}};
  w.add("model.embed_tokens.weight", src.get("tok_embeddings"));
  for (int l = 0; l < src.cfg.n_layers + extra_layers; ++l)
    for (auto [hf, meta] : names)
      w.add("model.layers." + std::to_string(l) + "." + hf + ".weight",
            src.get("layers." + std::to_string(l % src.cfg.n_layers) + "." + meta));
  w.add("model.norm.weight", src.get("norm"));
  w.add("lm_head.weight", src.get("output"));
  w.write(dir + "/model.safetensors");
}

nlohmann::json hf_config(const LlamaConfig& c) {
  return {{"model_type", "llama"},         {"hidden_size", c.dim},          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers}, {"num_attention_heads", c.n_heads}, {"num_key_value_heads", c.n_kv_heads},
          {"vocab_size", c.vocab_size},    {"max_position_embeddings", c.seq_len}, {"rms_norm_eps", 1e-5}};
}

}  // namespace

// ---------------------------------------------------------------- item 3: the sampler

TEST(Hardening, SamplerRefusesNonFiniteLogits) {
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    for (float temp : {0.f, 0.8f}) {
      std::vector<float> logits(50, 0.5f);
      logits[37] = bad;
      Sampler s(50, temp, 0.9f, 1);
      const std::string e = error_of([&] { s.sample(logits.data()); });
      EXPECT_TRUE(contains(e, "token 37")) << "temp " << temp << ": " << e;
    }
  }
}

TEST(Hardening, SamplerAtTinyTemperaturesIsGreedy) {
  for (float temp : {1e-38f, 1e-42f, 4e-45f, 1e-30f}) {
    for (float top_p : {0.9f, 1.f, 0.f}) {
      std::vector<float> logits(512);
      for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(float(i)) * 10.f;
      const int best = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
      Sampler s(512, temp, top_p, 7);
      EXPECT_EQ(s.sample(logits.data()), best) << "T " << temp << " p " << top_p;
    }
  }
}

TEST(Hardening, SamplerEdgeDistributions) {
  // Flat logits with a tiny p: the cutoff is above every probability; a token is still drawn.
  std::vector<float> flat(1000, 1.f);
  Sampler s1(1000, 1.f, 1e-6f, 3);
  const int t = s1.sample(flat.data());
  EXPECT_GE(t, 0);
  EXPECT_LT(t, 1000);
  // A one-token vocabulary.
  float one = 2.f;
  Sampler s2(1, 0.7f, 0.5f, 3);
  EXPECT_EQ(s2.sample(&one), 0);
  EXPECT_THROW(Sampler(10, std::numeric_limits<float>::infinity(), 0.9f, 1), Error);
  EXPECT_THROW(Sampler(10, std::nanf(""), 0.9f, 1), Error);
}

// ---------------------------------------------------------------- items 4, 7: configs and metadata

TEST(Hardening, HfConfigIsTypeAndRangeChecked) {
  const nlohmann::json ok = hf_config(kTiny);
  EXPECT_NO_THROW(parse_hf_config(ok.dump(), "config.json"));
  const auto bad = [&](const char* key, const nlohmann::json& v) {
    nlohmann::json j = ok;
    j[key] = v;
    return error_of([&] { parse_hf_config(j.dump(), "config.json"); });
  };
  EXPECT_TRUE(contains(bad("num_hidden_layers", 2.5), "'num_hidden_layers'"));
  EXPECT_TRUE(contains(bad("hidden_size", 1e300), "'hidden_size'"));
  EXPECT_TRUE(contains(bad("rms_norm_eps", 1e308), "'rms_norm_eps'"));
  EXPECT_TRUE(contains(bad("rope_theta", -1), "'rope_theta'"));
  EXPECT_TRUE(contains(bad("rms_norm_eps", "tiny"), "'rms_norm_eps'"));
  // Nesting is bounded before anything walks the tree.
  const std::string deep = "{\"hidden_size\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_TRUE(contains(error_of([&] { parse_hf_config(deep, "config.json"); }), "nested deeper"));
}

// rope_scaling: linear sets the angle scale, llama3 the per-pair factors (llama.cpp's converter's
// formula), anything else is named; a non-positive factor is refused.
TEST(Hardening, HfRopeScalingIsParsedOrNamed) {
  nlohmann::json j = hf_config(kTiny);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  EXPECT_EQ(parse_hf_config(j.dump(), "config.json").cfg.rope_freq_scale, 0.25f);
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["rope_theta"] = 500000.0;
  j["hidden_size"] = 128 * kTiny.n_heads;  // head size 128, as Llama 3.1
  const HfConfig h = parse_hf_config(j.dump(), "config.json");
  EXPECT_EQ(h.cfg.rope_freq_scale, 1.f);
  ASSERT_EQ(h.rope_factors.size(), 64u);
  EXPECT_EQ(h.rope_factors.front(), 1.f);  // wavelength 2π: far below 8192 / 4
  EXPECT_EQ(h.rope_factors.back(), 8.f);   // 500000^(126/128)·2π: far above 8192
  for (size_t i = 1; i < h.rope_factors.size(); ++i) EXPECT_GE(h.rope_factors[i], h.rope_factors[i - 1]) << i;
  // Pair 40: wavelength 2π·500000^(80/128) ≈ 2.3e4 — above 8192 → factor 8; pair 28: ≈ 1955 — below 2048 → 1.
  EXPECT_EQ(h.rope_factors[40], 8.f);
  EXPECT_EQ(h.rope_factors[28], 1.f);
  const auto blend = llama3_rope_factors(128, 500000.f, 8.f, 1.f, 4.f, 8192);
  const double wl = 2 * M_PI * std::pow(500000.0, 64.0 / 128), smooth = (8192 / wl - 1) / 3;  // pair 32: in the blend
  ASSERT_TRUE(wl > 2048 && wl < 8192);
  EXPECT_NEAR(blend[32], 1 / ((1 - smooth) / 8 + smooth), 1e-4);
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_TRUE(contains(error_of([&] { parse_hf_config(j.dump(), "config.json"); }), "'yarn'"));
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 0.0}};
  EXPECT_TRUE(contains(error_of([&] { parse_hf_config(j.dump(), "config.json"); }), "factor"));
}

TEST(Hardening, HfQwen3ConfigSetsItsSwitches) {
  nlohmann::json j = hf_config(kTiny);
  j["model_type"] = "qwen3";
  const HfConfig h = parse_hf_config(j.dump(), "config.json");
  EXPECT_EQ(h.cfg.arch, "qwen3");
  EXPECT_TRUE(h.cfg.qk_norm && h.cfg.qk_norm_per_head);
  EXPECT_FALSE(h.cfg.qkv_bias);
  EXPECT_EQ(h.cfg.head_dim, 128);  // transformers' default when config.json has none
  j["head_dim"] = 16;
  EXPECT_EQ(parse_hf_config(j.dump(), "config.json").cfg.head_dim, 16);
  j["attention_bias"] = true;
  EXPECT_TRUE(contains(error_of([&] { parse_hf_config(j.dump(), "config.json"); }), "attention_bias"));
  j["model_type"] = "qwen3_moe";
  EXPECT_TRUE(contains(error_of([&] { parse_hf_config(j.dump(), "config.json"); }), "'qwen3_moe'"));
}

TEST(Hardening, NonFiniteHyperParametersAreRefused) {
  LlamaConfig c = kTiny;
  c.norm_eps = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(contains(error_of([&] { c.validate("m.gguf"); }), "norm_eps"));
  c = kTiny;
  c.rope_theta = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(contains(error_of([&] { c.validate("m.gguf"); }), "rope_theta"));
  c.rope_theta = std::nanf("");
  EXPECT_TRUE(contains(error_of([&] { c.validate("m.gguf"); }), "rope_theta"));
}

TEST(Hardening, HfCheckpointWithMoreLayersThanItsConfigIsRefused) {
  const std::string dir = test::temp_dir() + "/hf";
  const LlamaSource src = synthetic_llama(kTiny, 3);
  write_hf_dir(dir, src, hf_config(kTiny));
  EXPECT_NO_THROW(load_hf_llama(dir));
  LlamaConfig fewer = kTiny;
  fewer.n_layers = 1;
  write_hf_dir(dir, src, hf_config(fewer));  // 2 layers of tensors, config says 1
  const std::string e = error_of([&] { load_hf_llama(dir); });
  EXPECT_TRUE(contains(e, "model.layers.1.")) << e;
  EXPECT_TRUE(contains(e, "1 layers")) << e;
}

TEST(Hardening, NonFiniteWeightsAreRefusedByName) {
  LlamaSource src = synthetic_llama(kTiny, 4);
  EXPECT_NO_THROW(src.validate());
  Tensor emb = src.get("tok_embeddings").clone();
  emb.data<float>()[5 * kTiny.dim + 3] = std::nanf("");  // a row no prompt may use
  src.tensors["tok_embeddings"] = emb;
  std::string e = error_of([&] { src.validate(); });
  EXPECT_TRUE(contains(e, "'tok_embeddings'") && contains(e, "non-finite")) << e;
  src = synthetic_llama(kTiny, 4);
  Tensor n = src.get("layers.1.ffn_norm").clone();
  n.data<float>()[0] = std::numeric_limits<float>::infinity();
  src.tensors["layers.1.ffn_norm"] = n;
  e = error_of([&] { LlamaModel m(src, FormatSpec("f32")); });
  EXPECT_TRUE(contains(e, "'layers.1.ffn_norm'")) << e;
  // compress refuses the same source instead of copying the NaN into its output.
  CompressOptions o;
  e = error_of([&] { compress_llama(src, {}, o); });
  EXPECT_TRUE(contains(e, "'layers.1.ffn_norm'")) << e;
}

// A float where an integer belongs (rank: 1e300) was undefined behaviour and, in Release, dropped a
// layer's low-rank branch: now an error naming the tensor and the field.
TEST(Hardening, TensorzipIntegerMetadataMustBeIntegers) {
  const std::string dir = test::temp_dir();
  CompressOptions o;
  o.quant.fmt.bits = 4;
  o.quant.fmt.group = 32;
  o.quant.lowrank = 2;
  o.quant.lowrank_method = LowRankMethod::Svd;
  const auto res = compress_llama(synthetic_llama(kTiny, 5), {}, o);
  write_tensorzip(res.model, nullptr, dir + "/m.tz");
  ASSERT_NO_THROW(load_tensorzip(dir + "/m.tz"));
  const auto f = io::SafetensorsFile::open(dir + "/m.tz");
  for (const auto& [field, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"rank", 1e300}, {"rank", 2.0}, {"rows", 3.5}, {"bits", -4}, {"outliers", "many"}, {"group", 1e19}}) {
    nlohmann::json formats = nlohmann::json::parse(f.metadata().at("tensorzip.tensors"));
    formats["layers.0.attention.wq"][field] = value;
    io::SafetensorsWriter w;
    for (const auto& [k, v] : f.metadata()) w.set_metadata(k, k == "tensorzip.tensors" ? formats.dump() : v);
    for (const auto& e : f.tensors()) w.add(e.name, f.tensor(e.name));
    w.write(dir + "/bad.tz");
    const std::string e = error_of([&] { load_tensorzip(dir + "/bad.tz"); });
    EXPECT_TRUE(contains(e, "'layers.0.attention.wq'") && contains(e, "'" + field + "'")) << field << " = " << value << ": " << e;
  }
}

// A GGUF layer kept as llama.cpp's blocks round-trips through a tensorzip file byte for byte, runs
// as it did, and a damaged block entry (unknown type, wrong shape) is an error naming the tensor.
TEST(Hardening, TensorzipGgmlBlocksRoundTripAndAreChecked) {
  const std::string dir = test::temp_dir();
  LlamaSource src = synthetic_llama(kTiny, 8);
  const Tensor w = src.tensors.at("layers.0.attention.wq");
  std::vector<uint8_t> blocks(size_t(w.numel()) / 32 * 34);
  io::quantize_ggml(io::kGgmlQ8_0, w.data<float>(), blocks.data(), size_t(w.numel()));
  src.tensors.erase("layers.0.attention.wq");
  src.quantized["layers.0.attention.wq"].ggml =
      std::make_shared<const GgmlMatrix>(GgmlMatrix::from_blocks(io::kGgmlQ8_0, w.dim(0), w.dim(1), blocks.data(), "wq"));
  write_tensorzip(src, nullptr, dir + "/m.tz");
  const LlamaSource back = load_tensorzip(dir + "/m.tz");
  ASSERT_TRUE(back.quantized.at("layers.0.attention.wq").ggml);
  const GgmlMatrix& got = *back.quantized.at("layers.0.attention.wq").ggml;
  EXPECT_TRUE(got.bytes() == blocks.size() && std::memcmp(got.data(), blocks.data(), blocks.size()) == 0);
  const std::vector<int> ids = {1, 2, 3, 4, 5};
  std::vector<float> a(size_t(5 * kTiny.vocab_size)), b(a.size());
  LlamaSession(LlamaModel(src, FormatSpec("native"))).forward(ids.data(), 5, 0, a.data(), true);
  LlamaSession(LlamaModel(back, FormatSpec("native"))).forward(ids.data(), 5, 0, b.data(), true);
  EXPECT_EQ(a, b);
  const auto f = io::SafetensorsFile::open(dir + "/m.tz");
  for (const auto& [field, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"ggml_type", "q9_X"}, {"ggml_type", "f16"}, {"ggml_type", 8}, {"rows", 31}, {"cols", 48}}) {
    nlohmann::json formats = nlohmann::json::parse(f.metadata().at("tensorzip.tensors"));
    formats["layers.0.attention.wq"][field] = value;
    io::SafetensorsWriter wr;
    for (const auto& [k, v] : f.metadata()) wr.set_metadata(k, k == "tensorzip.tensors" ? formats.dump() : v);
    for (const auto& e : f.tensors()) wr.add(e.name, f.tensor(e.name));
    wr.write(dir + "/bad.tz");
    const std::string e = error_of([&] { load_tensorzip(dir + "/bad.tz"); });
    EXPECT_TRUE(contains(e, "'layers.0.attention.wq")) << field << " = " << value << ": " << e;
  }
}

// ---------------------------------------------------------------- item 7: globs and specs that match nothing

TEST(Hardening, WeightSpecOverrideThatMatchesNothingIsAnError) {
  const LlamaSource src = synthetic_llama(kTiny, 6);
  EXPECT_NO_THROW(LlamaModel(src, FormatSpec("q4,layers.0.*=f32")));
  const std::string e = error_of([&] { LlamaModel(src, FormatSpec("q4,layer.0.*=f32")); });
  EXPECT_TRUE(contains(e, "'layer.0.*' matches no linear layer")) << e;
}

TEST(Hardening, CompressGlobThatMatchesNothingIsAnError) {
  const LlamaSource src = synthetic_llama(kTiny, 6);
  CompressOptions o;
  o.include = {"layers.9.*"};
  EXPECT_TRUE(contains(error_of([&] { compress_llama(src, {}, o); }), "--include 'layers.9.*' matches no tensor"));
  o.include = {"layers.*"};
  o.exclude = {"*.feed_forward.w4"};
  EXPECT_TRUE(contains(error_of([&] { compress_llama(src, {}, o); }), "--exclude '*.feed_forward.w4'"));
}

// ---------------------------------------------------------------- item 7: diverging tuning

TEST(Hardening, DivergingTuningGivesTheModelBackUnchanged) {
  const LlamaSource teacher = synthetic_llama(LlamaConfig{32, 64, 1, 2, 2, 16, 32}, 8);
  CompressOptions o;
  o.quant.fmt.bits = 3;
  o.quant.fmt.group = 32;
  o.quant.fmt.symmetric = false;
  const auto res = compress_llama(teacher, {}, o);
  std::vector<std::vector<int>> calib;
  for (int s = 0; s < 4; ++s) calib.push_back({1, 3 + s, 5, 7, 2 + s, 9, 11, 4});
  for (double lr : {10.0, 1e4}) {
    LlamaSource student = res.model;
    TuneOptions t;
    t.epochs = 2;
    t.lr = lr;
    t.codes = true;
    t.codes_lr = lr;
    const TuneReport rep = tune_quantized(teacher, student, calib, t);
    ASSERT_TRUE(rep.reverted) << "lr " << lr << ": KL " << rep.kl_before << " -> " << rep.kl_after;
    for (const auto& [name, c] : student.quantized) {
      EXPECT_EQ(c.q.scales, res.model.quantized.at(name).q.scales) << name;
      EXPECT_EQ(c.q.codes, res.model.quantized.at(name).q.codes) << name;
    }
    EXPECT_NO_THROW(LlamaModel(student, FormatSpec("native")));
  }
  // A sane step size still tunes.
  LlamaSource student = res.model;
  TuneOptions t;
  t.epochs = 2;
  const TuneReport rep = tune_quantized(teacher, student, calib, t);
  EXPECT_FALSE(rep.reverted);
  EXPECT_LT(rep.kl_after, rep.kl_before);
}

// ---------------------------------------------------------------- item 7: PEFT adapters

TEST(Hardening, PeftAdapterMustMatchItsConfig) {
  const std::string dir = test::temp_dir() + "/lora";
  PeftAdapter ad;
  ad.r = 2;
  ad.lora_alpha = 4;
  ad.target_modules = {"q_proj", "v_proj"};
  LoraAdapter l{2, 4.f, std::vector<float>(2 * 32, 0.01f), std::vector<float>(32 * 2, 0.01f)};
  ad.modules["model.layers.0.self_attn.q_proj"] = l;
  write_peft_adapter(dir, ad);
  EXPECT_NO_THROW(read_peft_adapter(dir));
  const auto with_config = [&](nlohmann::json j) {
    write_text(dir + "/adapter_config.json", j.dump());
    return error_of([&] { read_peft_adapter(dir); });
  };
  const nlohmann::json base = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}, {"target_modules", {"q_proj", "v_proj"}}};
  nlohmann::json j = base;
  j["r"] = 8;
  EXPECT_TRUE(contains(with_config(j), "has rank 2 but")) << with_config(j);
  j = base;
  j["target_modules"] = {"k_proj"};
  EXPECT_TRUE(contains(with_config(j), "not among the target_modules")) << with_config(j);
  j = base;
  j["lora_alpha"] = 1e308;
  EXPECT_TRUE(contains(with_config(j), "'lora_alpha'")) << with_config(j);
  j = base;
  j["r"] = 2.5;
  EXPECT_TRUE(contains(with_config(j), "'r'")) << with_config(j);
  j = base;
  j["rank_pattern"] = {{"q_proj", 2}};
  j["r"] = 8;
  EXPECT_EQ(with_config(j), "");  // ranks may differ from r under a rank_pattern
  j = base;
  j["target_modules"] = ".*q_proj";  // a regex: PEFT's to match
  EXPECT_EQ(with_config(j), "");
  const std::string deep = "{\"r\":" + std::string(100000, '[') + "}";
  write_text(dir + "/adapter_config.json", deep);
  EXPECT_TRUE(contains(error_of([&] { read_peft_adapter(dir); }), "nested deeper"));
}

// Issue 25: every adapter_config field and tensor is honoured or refused by name, never ignored.
TEST(Hardening, PeftOptionsAreHonouredOrRefusedByName) {
  const std::string dir = test::temp_dir() + "/lora";
  PeftAdapter ad;
  ad.r = 2;
  ad.lora_alpha = 4;
  ad.target_modules = {"q_proj"};
  LoraAdapter l{2, 4.f, std::vector<float>(2 * 32, 0.01f), std::vector<float>(32 * 2, 0.01f)};
  ad.modules["model.layers.0.self_attn.q_proj"] = l;
  write_peft_adapter(dir, ad);
  const nlohmann::json base = nlohmann::json::parse(std::ifstream(dir + "/adapter_config.json"));
  const auto with_config = [&](nlohmann::json j) {
    write_text(dir + "/adapter_config.json", j.dump());
    return error_of([&] { read_peft_adapter(dir); });
  };
  EXPECT_EQ(with_config(base), "");
  nlohmann::json j = base;
  j["use_rslora"] = true;
  EXPECT_EQ(with_config(j), "");
  EXPECT_FLOAT_EQ(read_peft_adapter(dir).modules.begin()->second.scale(), 4.f / std::sqrt(2.f));
  j = base;
  j["fan_in_fan_out"] = true;  // PEFT turns it off for Linear layers, with a warning
  EXPECT_EQ(with_config(j), "");
  for (const auto& [key, value, what] : std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"some_new_option", 1, "field 'some_new_option'"},
           {"lora_bias", true, "'lora_bias'"},
           {"layer_replication", nlohmann::json::array({nlohmann::json::array({0, 1})}), "'layer_replication'"},
           {"trainable_token_indices", nlohmann::json::array({1, 2}), "'trainable_token_indices'"},
           {"peft_type", "IA3", "peft_type \"IA3\""},
           {"bias", "some", "bias 'some'"},
           {"use_dora", true, "use_dora is set but"},
           {"rank_pattern", {{"q_proj", 0}}, "rank_pattern 'q_proj'"},
           {"alpha_pattern", {{"q_proj", "x"}}, "alpha_pattern 'q_proj'"},
           {"rank_pattern", {{std::string(300, 'a'), 2}}, "longer than 256 characters"}}) {
    j = base;
    j[key] = value;
    EXPECT_TRUE(contains(with_config(j), what)) << key << ": " << with_config(j);
  }
  j = base;
  j["rank_pattern"] = {{"q_proj", 3}};  // the pattern's r, not the tensors'
  EXPECT_TRUE(contains(with_config(j), "has rank 2 but")) << with_config(j);
  j = base;
  j["alpha_pattern"] = {{"layers\\.0\\..*q_proj", 9.0}};  // a regex key, matched as PEFT does
  EXPECT_EQ(with_config(j), "");
  EXPECT_FLOAT_EQ(read_peft_adapter(dir).modules.begin()->second.alpha, 9.f);
  write_text(dir + "/adapter_config.json", base.dump());
  // Tensors: a trained bias, a magnitude without use_dora, an unknown tensor — each named.
  const auto with_tensor = [&](const std::string& name, Shape shape) {
    io::SafetensorsWriter w;
    std::vector<Tensor> keep;
    const auto f = io::SafetensorsFile::open(dir + "/adapter_model.safetensors");
    for (const auto& e : f.tensors()) keep.push_back(f.tensor(e.name).clone()), w.add(e.name, keep.back());
    keep.push_back(Tensor::zeros(DType::F32, shape));
    w.add(name, keep.back());
    const std::string d2 = dir + "2";
    std::filesystem::create_directories(d2);
    w.write(d2 + "/adapter_model.safetensors");
    write_text(d2 + "/adapter_config.json", base.dump());
    return error_of([&] { read_peft_adapter(d2); });
  };
  EXPECT_TRUE(contains(with_tensor("base_model.model.model.layers.0.self_attn.q_proj.bias", {32}), "trained biases")) << "bias";
  EXPECT_TRUE(contains(with_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", {32}), "has no use_dora"));
  EXPECT_TRUE(contains(with_tensor("base_model.model.model.layers.0.self_attn.q_proj.hada_w1_a", {2, 2}), "hada_w1_a"));
  EXPECT_TRUE(contains(with_tensor("base_model.model.model.norm.weight", {32}), "neither a LoRA tensor nor a module of modules_to_save"));
}

// ---------------------------------------------------------------- item 8: memory sized by use

TEST(Hardening, KvCacheGrowsWithUseAndKeepsResults) {
  LlamaConfig c = kTiny;
  c.seq_len = 16777215;  // as a hostile file declares
  const LlamaSource src = synthetic_llama(c, 9);
  LlamaModel model(src, FormatSpec("f32"));
  LlamaSession grown(model);  // bound: 16M positions; allocated: what is used
  LlamaSession fixed(model, 600);
  std::vector<int> ids(600);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int(i * 7 % 16);
  std::vector<float> a(16), b(16 * 600);
  // One token at a time across the 256 -> 512 -> 600 growth steps vs one 600-token prefill.
  for (int p = 0; p < 600; ++p) grown.forward(&ids[size_t(p)], 1, p, a.data());
  fixed.forward(ids.data(), 600, 0, b.data(), true);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(a[size_t(i)], b[size_t(599 * 16 + i)], 1e-3f) << i;
  EXPECT_LE(grown.kv_cache_bytes(), size_t(2) * 1024 * 2 * c.kv_dim() * 4);  // not 16M positions
  // A prefill whose cache cannot fit in memory is a clear error, not an OOM kill.
  const std::string e = error_of([&] { require_memory(size_t(1) << 62, "the KV cache for 16777215 positions"); });
  EXPECT_TRUE(contains(e, "the KV cache for 16777215 positions needs")) << e;
}

}  // namespace tz
