// The runner against llama.cpp itself (../shared/fixtures, written by llama.cpp c392e50; README
// there): prompt logits at every position and the 32-token greedy continuation of the f32 models,
// and the logits of one model in every GGUF weight type. Skips with a message when the fixtures
// are absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tests/test_util.h"

namespace tz {
namespace {

namespace fs = std::filesystem;

std::vector<float> read_f32(const std::string& path) {
  const auto b = test::read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

std::vector<int> read_ids(const std::string& path, const std::string& prefix = "") {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (prefix.empty() || line.rfind(prefix, 0) == 0) break;
  std::istringstream ss(line.substr(prefix.size()));
  std::vector<int> ids;
  for (int id; ss >> id;) ids.push_back(id);
  return ids;
}

struct ProtocolRun {
  std::vector<float> prompt_logits;  // [32, vocab]
  std::vector<int> greedy;           // 32 generated ids
  size_t native_layers = 0;          // linear layers kept low-bit (llama.cpp blocks, ggml_gemm)
};

// llama.cpp's protocol: the prompt in one call with every position's logits, then 32 greedy
// tokens (argmax, ties to the lowest id), each fed back on its own.
ProtocolRun run_protocol(const std::string& gguf, const std::string& weights = "native") {
  const LlamaSource src = load_llama(gguf);
  LlamaModel model(src, FormatSpec(weights));
  ProtocolRun r;
  r.native_layers = src.quantized.size();
  const std::vector<int> prompt = read_ids(test::fixtures_dir() + "/prompt.tokens.txt");
  const int V = model.config().vocab_size, n = int(prompt.size());
  LlamaSession s(model, 128);
  r.prompt_logits.resize(size_t(n) * size_t(V));
  s.forward(prompt.data(), n, 0, r.prompt_logits.data(), true);
  std::vector<float> last(r.prompt_logits.end() - V, r.prompt_logits.end());
  for (int k = 0; k < 32; ++k) {
    int tok = int(std::max_element(last.begin(), last.end()) - last.begin());
    r.greedy.push_back(tok);
    s.forward(&tok, 1, n + k, last.data());
  }
  return r;
}

#define TZ_REQUIRE_FIXTURES(sub)                                                                      \
  do {                                                                                                \
    if (!fs::exists(test::fixtures_dir() + "/" sub)) GTEST_SKIP() << "../shared/fixtures/" sub " not found"; \
  } while (0)

}  // namespace

// f32 models: every position's logits within 1e-3 × the logits' range, greedy text identical.
TEST(LlamaCpp, F32LogitsAndGreedyMatch) {
  TZ_REQUIRE_FIXTURES("arch");
  for (const std::string stem : {"arch/llama", "arch/llama31", "arch/qwen2", "arch/phi3", "arch/gemma2", "arch/olmo2",
                                 "stories260K/stories260K.F32"}) {
    SCOPED_TRACE(stem);
    const std::string base = test::fixtures_dir() + "/" + stem;
    const ProtocolRun r = run_protocol(base + ".gguf");
    const auto want = read_f32(base + ".logits.f32");
    ASSERT_EQ(r.prompt_logits.size(), want.size());
    const auto [lo, hi] = std::minmax_element(want.begin(), want.end());
    float diff = 0;
    for (size_t i = 0; i < want.size(); ++i) diff = std::max(diff, std::fabs(r.prompt_logits[i] - want[i]));
    EXPECT_LE(diff, 1e-3f * (*hi - *lo)) << "max abs diff " << diff;
    EXPECT_EQ(r.greedy, read_ids(base + ".greedy.txt", "ids:"));
    std::printf("%s: max abs logit diff %.3g (range %.3g), greedy 32/32\n", stem.c_str(), diff, *hi - *lo);
  }
}

// Every weight type: relative L2 of the logits against llama.cpp's ≤ 2e-2, and against the f32
// model no worse than 1.25× llama.cpp's own error.
TEST(LlamaCpp, EveryWeightTypeMatchesLlamaCpp) {
  TZ_REQUIRE_FIXTURES("quant");
  const auto f32 = read_f32(test::fixtures_dir() + "/arch/llama.logits.f32");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(test::fixtures_dir() + "/quant"))
    if (e.path().extension() == ".gguf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 18u);
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    const std::string base = path.substr(0, path.size() - 5);
    const ProtocolRun r = run_protocol(path);
    const auto theirs = read_f32(base + ".logits.f32");
    const auto exact = read_f32(base + ".dequant-f32.logits.f32");  // llama.cpp on the dequantized f32 weights
    const double vs_llama = test::rel_l2(r.prompt_logits, theirs), vs_exact = test::rel_l2(r.prompt_logits, exact);
    const double ours_f32 = test::rel_l2(r.prompt_logits, f32), theirs_f32 = test::rel_l2(theirs, f32);
    // Every quantized type runs natively on llama.cpp's blocks (ggml_gemm) with llama.cpp's own
    // activation blocks (q8_0 / q8_1 / q8_K) reproduced: most files land within 1e-6 of llama.cpp
    // (float summation order); q4_0 / q4_1 / iq4_xs / q2_K / tq* within ~1e-2 (llama.cpp's
    // repacked x86 paths round their activations differently). F16 / BF16 run in f32 and bf16.
    const bool native = r.native_layers > 0;
    EXPECT_LE(vs_llama, 2e-2);
    if (!native) EXPECT_LE(vs_exact, 1e-5);
    EXPECT_LE(ours_f32, 1.25 * theirs_f32);
    std::printf("%-28s rel L2 vs llama.cpp %.2e, vs llama.cpp on dequantized f32 %.2e; vs f32 model: ours %.3e, llama.cpp %.3e\n",
                fs::path(path).filename().c_str(), vs_llama, vs_exact, ours_f32, theirs_f32);
  }
}

// The native form of every quantized type (llama.cpp's blocks, kept) dequantizes to llama.cpp's
// values, and a model holding such layers round-trips through a tensorzip file byte for byte.
TEST(LlamaCpp, NativeLayersEqualTheDequantizationAndRoundTrip) {
  TZ_REQUIRE_FIXTURES("quant");
  int native_types = 0;
  for (const char* type : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_S", "Q5_K_M", "TQ1_0", "TQ2_0", "Q4_K_M"}) {
    SCOPED_TRACE(type);
    const std::string path = test::fixtures_dir() + "/quant/llama." + type + ".gguf";
    const LlamaSource src = load_llama(path);
    ASSERT_FALSE(src.quantized.empty());
    ++native_types;
    const auto g = io::GgufFile::open(path);
    for (const auto& [name, c] : src.quantized) {
      // LlamaSource names -> GGUF names for the two checked here.
      std::string gname;
      if (name == "layers.0.attention.wk") gname = "blk.0.attn_k.weight";
      if (name == "layers.0.feed_forward.w2") gname = "blk.0.ffn_down.weight";
      if (gname.empty()) continue;
      const Tensor want = g.tensor_f32(gname);
      std::vector<float> got(size_t(want.numel()));
      c.dequantize(got.data());
      float amax = 0, diff = 0;
      for (int64_t i = 0; i < want.numel(); ++i) {
        amax = std::max(amax, std::fabs(want.data<float>()[i]));
        diff = std::max(diff, std::fabs(got[size_t(i)] - want.data<float>()[i]));
      }
      EXPECT_LE(diff, 1e-6f * amax) << name;
    }
    const std::string out = test::temp_dir() + "/native.tz";
    write_tensorzip(src, nullptr, out);
    const LlamaSource back = load_tensorzip(out);
    ASSERT_EQ(back.quantized.size(), src.quantized.size());
    for (const auto& [name, c] : src.quantized) {  // llama.cpp's blocks, byte for byte
      ASSERT_TRUE(c.ggml && back.quantized.at(name).ggml) << name;
      const GgmlMatrix& b = *back.quantized.at(name).ggml;
      EXPECT_EQ(b.type, c.ggml->type) << name;
      EXPECT_EQ(b.rows, c.ggml->rows) << name;
      EXPECT_EQ(b.cols, c.ggml->cols) << name;
      EXPECT_TRUE(b.bytes() == c.ggml->bytes() && std::memcmp(b.data(), c.ggml->data(), b.bytes()) == 0) << name;
    }
  }
  EXPECT_EQ(native_types, 10);
}

// A tensorzip file carries the architecture switches: every fixture architecture written and read
// back gives the same logits (and the compressor runs on each).
TEST(LlamaCpp, ArchitecturesRoundTripThroughTensorzipFiles) {
  TZ_REQUIRE_FIXTURES("arch");
  for (const char* arch : {"llama31", "qwen2", "phi3", "gemma2", "olmo2"}) {
    SCOPED_TRACE(arch);
    const std::string gguf = test::fixtures_dir() + "/arch/" + arch + ".gguf", out = test::temp_dir() + "/m.tz";
    const LlamaSource src = load_llama(gguf);
    write_tensorzip(src, &*src.tokenizer, out);
    const LlamaSource back = load_llama(out);
    EXPECT_EQ(back.cfg.to_string(), src.cfg.to_string());
    EXPECT_EQ(back.cfg.plain_llama(), src.cfg.plain_llama());
    // The tokenizer travels inside the file (byte-level BPE as tokenizer.json, SentencePiece as tokenizer.bin).
    ASSERT_TRUE(back.tokenizer.has_value());
    EXPECT_EQ(back.tokenizer->kind(), src.tokenizer->kind());
    for (const char* text : {"Hello world! 123 <|im_start|>user\nÜber naïve café 你好", " leading  spaces\n\n"})
      for (bool special : {false, true})
        EXPECT_EQ(back.tokenizer->encode(text, true, false, special), src.tokenizer->encode(text, true, false, special)) << text;
    EXPECT_EQ(back.tokenizer->eos_id(), src.tokenizer->eos_id());
    const ProtocolRun a = run_protocol(gguf), b = run_protocol(out);
    EXPECT_EQ(a.prompt_logits, b.prompt_logits);
    EXPECT_EQ(a.greedy, b.greedy);
  }
}

// llama.cpp scales Gemma 2 27B's (46 layers) scores by (dim / heads)^-1/2, not head_dim^-1/2: the
// gemma2 fixture re-written with 46 layers (its 26 repeated) gets that scale; 26 layers the default.
TEST(LlamaCpp, Gemma2With46LayersTakesThe27BAttentionScale) {
  TZ_REQUIRE_FIXTURES("arch");
  const io::GgufFile g = io::GgufFile::open(test::fixtures_dir() + "/arch/gemma2.gguf");
  io::GgufWriter w;
  for (const auto& kv : g.metadata())
    if (kv.key == "gemma2.block_count") w.add_u32(kv.key, 46);
    else w.add(kv.key, kv.value);
  for (const auto& t : g.tensors()) {
    const auto bytes = [&] { return std::vector<uint8_t>(g.tensor_data(t), g.tensor_data(t) + t.nbytes); };
    if (!t.name.starts_with("blk.")) { w.add_tensor(t.name, t.ggml_type, t.shape, bytes()); continue; }
    if (!t.name.starts_with("blk.0.")) continue;
    for (int l = 0; l < 46; ++l) w.add_tensor("blk." + std::to_string(l) + t.name.substr(5), t.ggml_type, t.shape, bytes());
  }
  const std::string path = test::temp_dir() + "/gemma2-46.gguf";
  w.write(path);
  const LlamaSource src = load_llama(path);
  EXPECT_EQ(src.cfg.n_layers, 46);
  EXPECT_EQ(src.cfg.attn_scale, 0.25f);  // dim 64 / 4 heads = 16 (head_dim 32)
  EXPECT_EQ(load_llama(test::fixtures_dir() + "/arch/gemma2.gguf").cfg.attn_scale, 0.f);
}

// The same models from Hugging Face directories (config.json model_type qwen2 / phi3 / olmo2, HF
// tensor names, phi3's fused qkv_proj / gate_up_proj): the same config and the same logits.
TEST(LlamaCpp, ArchitecturesFromHuggingFaceDirectories) {
  TZ_REQUIRE_FIXTURES("arch");
  for (const char* arch : {"qwen2", "phi3", "gemma2", "olmo2"}) {
    SCOPED_TRACE(arch);
    const std::string gguf = test::fixtures_dir() + "/arch/" + arch + ".gguf", dir = test::temp_dir() + "/hf-" + arch;
    const LlamaSource src = load_llama(gguf);
    test::write_hf_dir(src, dir);
    const LlamaSource back = load_llama(dir);
    EXPECT_EQ(back.cfg.to_string(), src.cfg.to_string());
    EXPECT_EQ(back.cfg.arch, src.cfg.arch);
    EXPECT_EQ(back.cfg.sliding_window, src.cfg.sliding_window);
    const ProtocolRun a = run_protocol(gguf, "f32"), b = run_protocol(dir, "f32");
    if (std::string(arch) == "gemma2") {  // its norms went through w - 1 and back: equal to f32 rounding
      ASSERT_EQ(a.prompt_logits.size(), b.prompt_logits.size());
      EXPECT_LT(test::rel_l2(a.prompt_logits, b.prompt_logits), 1e-5);
    } else {
      EXPECT_EQ(a.prompt_logits, b.prompt_logits);
    }
    EXPECT_EQ(a.greedy, b.greedy);
  }
  // An architecture outside the list is one error naming it.
  const std::string dir = test::temp_dir() + "/hf-gemma";
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"model_type":"gemma3","hidden_size":64})";
  try {
    load_llama(dir);
    FAIL() << "gemma3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'gemma3'"), std::string::npos) << e.what();
  }
  // Gemma 2 27B's attention scale: query_pre_attn_scalar (dim / heads there, not head_dim).
  const std::string g2 = test::temp_dir() + "/hf-gemma2";
  test::write_hf_dir(load_llama(test::fixtures_dir() + "/arch/gemma2.gguf"), g2);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(g2 + "/config.json"));
  cfg["query_pre_attn_scalar"] = 16;
  std::ofstream(g2 + "/config.json") << cfg.dump();
  EXPECT_EQ(load_llama(g2).cfg.attn_scale, 0.25f);
}

}  // namespace tz
