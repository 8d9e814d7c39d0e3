// Writes the fuzz seed corpora: small valid files of each format plus truncated and bit-flipped
// variants, into <dir>/{safetensors,gguf,llama2c,llama2c_v1,peft_config,tokenizer,tokenizer_json,tensorzip,hf_config,hf_quant,serve_request}/,
// plus hostile seeds (deep nesting, floats in integer fields, duplicate keys). Run by ctest before the fuzz targets.
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "tensorzip/compress.h"
#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/hf_quant.h"
#include "tensorzip/io/safetensors.h"
#include "tests/test_util.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tz_make_corpus DIR\n";
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path root = argv[1];
  std::mt19937 rng(2024);
  const auto emit = [&](const std::string& kind, const std::vector<uint8_t>& valid) {
    const fs::path d = root / kind;
    fs::create_directories(d);
    fs::create_directories(root / "work" / kind);  // where the fuzzer keeps what it finds
    tz::test::write_file((d / "valid").string(), valid);
    tz::test::write_file((d / "empty").string(), {});
    for (int i = 1; i <= 4; ++i) {
      std::vector<uint8_t> t(valid.begin(), valid.begin() + long(valid.size() * size_t(i) / 5));
      tz::test::write_file((d / ("trunc" + std::to_string(i))).string(), t);
    }
    for (int i = 0; i < 4; ++i) {
      auto f = valid;
      f[rng() % std::min<size_t>(f.size(), 256)] ^= uint8_t(1u << (rng() % 8));
      tz::test::write_file((d / ("flip" + std::to_string(i))).string(), f);
    }
  };
  // Hostile seeds named for the defects they once triggered (issue 23): deep nesting, floats where
  // integers belong, duplicate keys.
  const auto extra = [&](const std::string& kind, const std::string& name, const std::string& bytes) {
    tz::test::write_file((root / kind / name).string(), std::vector<uint8_t>(bytes.begin(), bytes.end()));
  };
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  emit("safetensors", tz::test::sample_safetensors());
  {
    const std::string e = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    const std::string hdr = "{\"a\":" + e + ",\"a\":" + e + "}";
    std::string dup(8, '\0');
    const uint64_t n = hdr.size();
    std::memcpy(dup.data(), &n, 8);
    extra("safetensors", "duplicate_key", dup + hdr + std::string(4, '\0'));
    std::string nested(8, '\0');
    const std::string nh = "{\"__metadata__\":" + deep + "}";
    const uint64_t nn = nh.size();
    std::memcpy(nested.data(), &nn, 8);
    extra("safetensors", "nested", nested + nh);
  }
  emit("gguf", tz::test::sample_gguf());
  emit("llama2c", tz::test::sample_llama2c(0, true));
  emit("llama2c_v1", tz::test::sample_llama2c(1, false));
  const std::string peft = R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none"})";
  emit("peft_config", std::vector<uint8_t>(peft.begin(), peft.end()));
  extra("peft_config", "nested", "{\"r\":" + deep + "}");
  extra("peft_config", "float_rank", R"({"peft_type": "LORA", "r": 1e300, "lora_alpha": 1e308, "target_modules": "q_proj"})");
  const std::string hf_cfg = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false})";
  emit("hf_config", std::vector<uint8_t>(hf_cfg.begin(), hf_cfg.end()));
  extra("hf_config", "nested", "{\"hidden_size\":" + deep + "}");
  extra("hf_config", "float_layers", R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2.5, "num_attention_heads": 1e300, "vocab_size": 32})");
  extra("hf_config", "inf_eps", R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 32, "rms_norm_eps": 1e999})");
  extra("hf_config", "gptq", hf_cfg.substr(0, hf_cfg.size() - 1) +
                                R"(, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": true, "checkpoint_format": "gptq"}})");
  extra("hf_config", "awq", hf_cfg.substr(0, hf_cfg.size() - 1) +
                               R"(, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}})");
  // AutoAWQ / GPTQ layers: the tensors with their quantization_config in the metadata.
  {
    const auto layer = [&](const std::string& cfg_text, int64_t rows, int64_t cols, bool act_order) {
      const tz::io::HfQuantConfig cfg = tz::io::parse_hf_quant_config(cfg_text, "corpus");
      tz::QuantFormat fmt;
      fmt.bits = cfg.bits;
      fmt.group = cfg.group;
      fmt.symmetric = false;
      fmt.scale_dtype = tz::DType::F16;
      const auto w = tz::test::random_floats(size_t(rows * cols), 7);
      tz::QuantMatrix q = tz::quantize_rtn_ref(w.data(), rows, cols, fmt);
      for (float& z : q.zeros) z = std::max(z, cfg.zeros_minus_one ? 1.f : 0.f);
      std::vector<int32_t> perm;
      for (int64_t i = act_order ? cols - 1 : -1; i >= 0; --i) perm.push_back(int32_t(i));
      const tz::io::HfQuantTensors t = tz::io::pack_hf_quant(cfg, q, perm);
      tz::io::SafetensorsWriter wr;
      wr.set_metadata("quantization_config", cfg_text);
      wr.add("qweight", t.qweight);
      wr.add("qzeros", t.qzeros);
      wr.add("scales", t.scales);
      if (t.g_idx.defined() && t.g_idx.numel() > 0) wr.add("g_idx", t.g_idx);
      const std::string tmp = (root / "hf_quant.tmp").string();
      wr.write(tmp);
      const auto bytes = tz::test::read_file(tmp);
      fs::remove(tmp);
      return bytes;
    };
    emit("hf_quant", layer(R"({"quant_method":"gptq","bits":3,"group_size":32,"desc_act":true,"sym":false})", 32, 64, true));
    const auto awq = layer(R"({"quant_method":"awq","bits":4,"group_size":32,"zero_point":true,"version":"gemm"})", 16, 64, false);
    extra("hf_quant", "awq", std::string(awq.begin(), awq.end()));
  }
  // tensorzip serve request bodies (completions, chat, tokenize, detokenize).
  const std::string completion = R"({"model": "base", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stop": ["\n", "The end"], "stream": true, "stream_options": {"include_usage": true}})";
  emit("serve_request", std::vector<uint8_t>(completion.begin(), completion.end()));
  extra("serve_request", "chat", R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_completion_tokens": 8, "n": 1, "frequency_penalty": 0})");
  extra("serve_request", "tokenize", R"({"content": "Once upon a time", "add_special": true})");
  extra("serve_request", "detokenize", R"({"tokens": [1, 403, 407]})");
  extra("serve_request", "nested", "{\"prompt\":" + deep + "}");
  extra("serve_request", "floats", R"({"prompt": "x", "max_tokens": 1e300, "seed": -1.5, "temperature": 1e999})");
  // A tiny llama2.c tokenizer.bin and a tokenizer.json with merges.
  const std::vector<uint8_t> tok = tz::test::sample_tokenizer_bin();
  emit("tokenizer", tok);
  const std::string hf = R"({"model":{"type":"BPE","byte_fallback":true,"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x41>":3,"\u2581":4,"O":5,"n":6,"On":7,"\u2581On":8},"merges":["O n","\u2581 On"]},"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"\u2581"},{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]}})";
  emit("tokenizer_json", std::vector<uint8_t>(hf.begin(), hf.end()));
  extra("tokenizer_json", "nested", R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"pretokenizers":)" + deep + "}}");
  // A small tensorzip model file: a generated LLaMA with compressed layers (AWQ, outliers, low rank).
  {
    tz::LlamaConfig c{32, 64, 1, 2, 1, 8, 8};
    tz::CompressOptions o;
    o.quant.method = tz::QuantMethod::Awq;
    o.quant.fmt.bits = 3;
    o.quant.fmt.group = 32;
    o.quant.fmt.symmetric = false;
    o.quant.outliers = 1;
    o.quant.lowrank = 2;
    o.fold_awq = false;
    auto res = tz::compress_llama(tz::synthetic_llama(c, 2), {{1, 2, 3, 4, 5, 6}}, o);
    // One layer as llama.cpp q8_0 blocks (NAME.ggml), the form GGUF layers keep.
    {
      const tz::Tensor w = res.model.dense("layers.0.feed_forward.w2");
      std::vector<uint8_t> blocks(size_t(w.numel()) / 32 * 34);
      tz::io::quantize_ggml(tz::io::kGgmlQ8_0, w.data<float>(), blocks.data(), size_t(w.numel()));
      res.model.tensors.erase("layers.0.feed_forward.w2");
      res.model.quantized["layers.0.feed_forward.w2"] = {};
      res.model.quantized["layers.0.feed_forward.w2"].ggml = std::make_shared<const tz::GgmlMatrix>(
          tz::GgmlMatrix::from_blocks(tz::io::kGgmlQ8_0, w.dim(0), w.dim(1), blocks.data(), "w2"));
    }
    const std::string tmp = (root / "tensorzip.tmp").string();
    tz::write_tensorzip(res.model, nullptr, tmp);
    emit("tensorzip", tz::test::read_file(tmp));
    // The same file with a float where an integer belongs ("rank": 1e300).
    const auto f = tz::io::SafetensorsFile::open(tmp);
    nlohmann::json formats = nlohmann::json::parse(f.metadata().at("tensorzip.tensors"));
    for (auto& [name, d] : formats.items()) d["rank"] = 1e300;
    tz::io::SafetensorsWriter w;
    for (const auto& [k, v] : f.metadata()) w.set_metadata(k, k == "tensorzip.tensors" ? formats.dump() : v);
    for (const auto& e : f.tensors()) w.add(e.name, f.tensor(e.name));
    const std::string bad = (root / "tensorzip" / "float_rank").string();
    w.write(bad);
    fs::remove(tmp);
  }
  std::cout << "corpus written to " << root << "\n";
  return 0;
}
