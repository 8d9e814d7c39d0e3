// Writes the fuzz seed corpora: small valid files of each format plus truncated and bit-flipped
// variants, into <dir>/{safetensors,gguf,llama2c,llama2c_v1,peft_config,tokenizer,tokenizer_json,tensorzip}/. Run by ctest before the fuzz targets.
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>

#include "tensorzip/compress.h"
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
  emit("safetensors", tz::test::sample_safetensors());
  emit("gguf", tz::test::sample_gguf());
  emit("llama2c", tz::test::sample_llama2c(0, true));
  emit("llama2c_v1", tz::test::sample_llama2c(1, false));
  const std::string peft = R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none"})";
  emit("peft_config", std::vector<uint8_t>(peft.begin(), peft.end()));
  // A tiny llama2.c tokenizer.bin (max_token_length, then score, length, bytes per token) and a
  // tokenizer.json with merges.
  std::vector<uint8_t> tok;
  const auto put32 = [&](const void* p) {
    tok.resize(tok.size() + 4);
    std::memcpy(tok.data() + tok.size() - 4, p, 4);
  };
  const int32_t max_len = 8;
  put32(&max_len);
  float score = 0.f;
  for (const std::string piece : {"<unk>", "<s>", "</s>", "<0x41>", " ", "O", "n", "c", "e", "On", "ce", " On", "Once"}) {
    const int32_t len = int32_t(piece.size());
    put32(&score);
    put32(&len);
    for (char ch : piece) tok.push_back(static_cast<uint8_t>(ch));
    score -= 1.f;
  }
  emit("tokenizer", tok);
  const std::string hf = R"({"model":{"type":"BPE","byte_fallback":true,"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x41>":3,"\u2581":4,"O":5,"n":6,"On":7,"\u2581On":8},"merges":["O n","\u2581 On"]},"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"\u2581"},{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]}})";
  emit("tokenizer_json", std::vector<uint8_t>(hf.begin(), hf.end()));
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
    const auto res = tz::compress_llama(tz::synthetic_llama(c, 2), {{1, 2, 3, 4, 5, 6}}, o);
    const std::string tmp = (root / "tensorzip.tmp").string();
    tz::write_tensorzip(res.model, nullptr, tmp);
    emit("tensorzip", tz::test::read_file(tmp));
    fs::remove(tmp);
  }
  std::cout << "corpus written to " << root << "\n";
  return 0;
}
