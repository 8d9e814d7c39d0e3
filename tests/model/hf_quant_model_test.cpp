// AutoAWQ / GPTQ checkpoints as whole models: a dense Hugging Face directory rewritten with its
// linear layers in the checkpoint's layout (and, beside it, the same directory holding the
// dequantized weights densely). Loading the quantized one must give exactly the reference's
// weights — through the q/k rotary permutation, phi3's fused matrices and act-order — keep the
// codes, run on the LUT kernels, and survive .tz re-export.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/hf_quant.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tests/test_util.h"

namespace tz {
namespace {
namespace fs = std::filesystem;

std::string model_path() { return test::models_dir() + "/stories260K/stories260K.bin"; }

std::vector<float> logits_of(const LlamaSource& src, const std::string& spec, const std::vector<int>& ids) {
  const LlamaModel m(src, FormatSpec(spec));
  LlamaSession s(m);
  std::vector<float> lg(ids.size() * size_t(m.config().vocab_size));
  s.forward(ids.data(), int(ids.size()), 0, lg.data(), true);
  return lg;
}

// Every quantized layer's weights equal the reference's exactly; the dense path gives the
// reference's logits bit for bit, the LUT kernels within their activation rounding, and a .tz
// copy keeps every code (and the act-order permutation).
void expect_same_model(const std::string& qdir, const std::string& ref_dir, int quantized, const std::vector<int>& ids) {
  const LlamaSource q = load_llama(qdir), ref = load_llama(ref_dir);
  EXPECT_EQ(int(q.quantized.size()), quantized);
  for (const auto& [name, c] : q.quantized) {
    std::vector<float> w(size_t(c.rows() * c.cols()));
    c.dequantize(w.data());
    const Tensor& r = ref.get(name);
    ASSERT_EQ(r.numel(), int64_t(w.size())) << name;
    EXPECT_TRUE(std::equal(w.begin(), w.end(), r.data<float>())) << name;
  }
  const auto want = logits_of(ref, "f32", ids);
  EXPECT_EQ(logits_of(q, "f32", ids), want);
  const auto native = logits_of(q, "native", ids);
  EXPECT_LT(test::rel_l2(native, want), 2e-2);
  const std::string tz = test::temp_dir() + "/m.tz";
  write_tensorzip(q, nullptr, tz);
  const LlamaSource back = load_llama(tz);
  ASSERT_EQ(back.quantized.size(), q.quantized.size());
  for (const auto& [name, c] : q.quantized) {
    const CompressedLinear& b = back.quantized.at(name);
    EXPECT_EQ(b.q.codes, c.q.codes) << name;
    EXPECT_EQ(b.q.scales, c.q.scales) << name;
    EXPECT_EQ(b.q.zeros, c.q.zeros) << name;
    EXPECT_EQ(b.input_perm, c.input_perm) << name;
    EXPECT_EQ(b.method, c.method) << name;
  }
  EXPECT_EQ(logits_of(back, "native", ids), native);
}

const std::vector<int> kIds = {1, 403, 407, 261, 378, 285, 299, 308, 42, 7, 400, 300};

}  // namespace

TEST(HfQuantModel, AwqAndGptqCheckpointsLoadWithTheirCodes) {
  TZ_REQUIRE_MODELS();
  const std::string dir = test::temp_dir();
  test::write_hf_dir(load_llama2c(model_path()), dir + "/dense");
  struct Case {
    const char* name;
    std::string config;
    bool act_order;
    int quantized;  // of 35 projections: stories260K's hidden size 172 fits some layouts only
  };
  const std::vector<Case> cases = {
      {"awq", R"({"quant_method":"awq","bits":4,"group_size":32,"zero_point":true,"version":"gemm","modules_to_not_convert":null})", false, 20},
      {"gptq4-act-v1", R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":true,"sym":false,"checkpoint_format":"gptq"})", true, 20},
      {"gptq8-v2", R"({"quant_method":"gptq","bits":8,"group_size":32,"desc_act":false,"sym":false,"checkpoint_format":"gptq_v2"})", false, 35},
      {"gptq2", R"({"quant_method":"gptq","bits":2,"group_size":-1,"desc_act":false,"sym":false,"damp_percent":0.01})", false, 20},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string qdir = dir + "/" + c.name, ref = qdir + "-ref";
    const test::HfQuantRewrite rw = test::write_hf_quantized_dir(dir + "/dense", qdir, ref, c.config, c.act_order, 5);
    EXPECT_EQ(rw.quantized, c.quantized);
    expect_same_model(qdir, ref, c.quantized, kIds);
    // Codes as packed, byte for byte (layers without the rotary row order: v, o and the MLP).
    const LlamaSource q = load_llama(qdir);
    for (const auto& [hf, codes] : rw.codes)
      if (hf == "model.layers.1.self_attn.v_proj.weight" || hf == "model.layers.2.self_attn.o_proj.weight") {
        const auto& got = q.quantized.at(hf.find("v_proj") != std::string::npos ? "layers.1.attention.wv" : "layers.2.attention.wo");
        EXPECT_EQ(got.q.codes, codes.codes) << hf;
        EXPECT_EQ(got.q.scales, codes.scales) << hf;
        EXPECT_EQ(got.q.zeros, codes.zeros) << hf;
      }
    EXPECT_NE(q.quantized.at("layers.0.attention.wq").method.find(c.name[0] == 'a' ? "awq 4-bit g32" : "gptq"), std::string::npos);
  }
}

// phi3's fused qkv_proj / gate_up_proj quantized: split by rows, act-order permutation shared.
TEST(HfQuantModel, FusedPhi3MatricesSplitWithTheirCodes) {
  const std::string gguf = test::fixtures_dir() + "/arch/phi3.gguf";
  if (!fs::exists(gguf)) GTEST_SKIP() << "../shared/fixtures/arch/phi3.gguf not found";
  const std::string dir = test::temp_dir();
  const LlamaSource src = load_llama(gguf);
  test::write_hf_dir(src, dir + "/dense");
  const std::string qc = R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":true,"sym":true,"checkpoint_format":"gptq_v2"})";
  const test::HfQuantRewrite rw = test::write_hf_quantized_dir(dir + "/dense", dir + "/q", dir + "/ref", qc, true, 9);
  ASSERT_GT(rw.quantized, 0);
  const LlamaSource q = load_llama(dir + "/q");
  EXPECT_TRUE(q.quantized.count("layers.0.attention.wk"));
  EXPECT_FALSE(q.quantized.at("layers.0.attention.wk").input_perm.empty());
  std::vector<int> ids;
  for (int i = 0; i < 10; ++i) ids.push_back((i * 37 + 3) % src.cfg.vocab_size);
  expect_same_model(dir + "/q", dir + "/ref", int(q.quantized.size()), ids);
}

// GGUF export keeps the codes where they are on the type's grid: GPTQ sym 4-bit into q4_0 and
// 8-bit into q8_0 exactly, AWQ into q4_1 up to its min's f16 rounding; llama.cpp's blocks read back
// hold them. Layers off the grid (act-order; tensorzip's bipolar levels) are re-quantized.
TEST(HfQuantModel, GgufExportKeepsCodesOnTheTypesGrid) {
  TZ_REQUIRE_MODELS();
  const std::string dir = test::temp_dir();
  test::write_hf_dir(load_llama2c(model_path()), dir + "/dense");
  const Tokenizer tok = Tokenizer::from_llama2c(test::models_dir() + "/stories260K/tok512.bin", 512);
  struct Case {
    const char* name;
    std::string config;
    bool act_order;
    uint32_t type;
    double max_err;  // of a kept matrix
  };
  const std::vector<Case> cases = {
      {"gptq4sym", R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":false,"sym":true})", false, io::kGgmlQ4_0, 0.0},
      {"gptq8sym", R"({"quant_method":"gptq","bits":8,"group_size":64,"desc_act":false,"sym":true})", false, io::kGgmlQ8_0, 0.0},
      {"awq", R"({"quant_method":"awq","bits":4,"group_size":64,"zero_point":true,"version":"gemm"})", false, io::kGgmlQ4_1, 1e-3},
      {"gptq4act", R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":true,"sym":true})", true, io::kGgmlQ4_0, -1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string qdir = dir + "/" + c.name;
    test::write_hf_quantized_dir(dir + "/dense", qdir, qdir + "-ref", c.config, c.act_order, 2);
    const LlamaSource src = load_llama(qdir);
    const GgufWriteReport rep = write_gguf_llama(src, tok, qdir + ".gguf", c.type);
    const LlamaSource back = load_llama(qdir + ".gguf");
    int kept = 0;
    for (const auto& t : rep.tensors) {
      if (!t.codes_kept) continue;
      ++kept;
      EXPECT_LE(t.rel_error, c.max_err) << t.name;
    }
    const auto& attn = rep.tensors[2];  // token_embd, attn_norm, attn_q
    ASSERT_EQ(attn.name, "blk.0.attn_q.weight");
    if (c.max_err < 0) {
      EXPECT_EQ(kept, 0);  // act-order: no GGUF type holds an input permutation
      continue;
    }
    int on_blocks = 0;  // rows of 172 (ffn_down) hold no 32-value block: written f16
    for (const auto& [name, q] : src.quantized) on_blocks += q.cols() % 32 == 0;
    EXPECT_EQ(kept, on_blocks);
    EXPECT_TRUE(attn.codes_kept);
    // The blocks llama.cpp reads decode to the checkpoint's weights (exactly for the _0 types).
    for (const char* name : {"layers.0.attention.wq", "layers.3.attention.wo"}) {
      const CompressedLinear& a = src.quantized.at(name);
      const CompressedLinear& b = back.quantized.at(name);
      ASSERT_TRUE(b.ggml != nullptr) << name;
      std::vector<float> wa(size_t(a.rows() * a.cols())), wb(wa.size());
      a.dequantize(wa.data());
      b.dequantize(wb.data());
      if (c.max_err == 0) EXPECT_EQ(wa, wb) << name;
      else EXPECT_LT(test::rel_l2(wb, wa), c.max_err) << name;
    }
  }
}

TEST(HfQuantModel, BrokenCheckpointsAreRefusedByName) {
  TZ_REQUIRE_MODELS();
  const std::string dir = test::temp_dir();
  test::write_hf_dir(load_llama2c(model_path()), dir + "/dense");
  const std::string qc = R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":false,"sym":false,"checkpoint_format":"gptq_v2"})";
  test::write_hf_quantized_dir(dir + "/dense", dir + "/q", dir + "/ref", qc, false, 1);
  const auto error_of = [](const std::string& path) {
    try {
      load_llama(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // qweight tensors without quantization_config.
  fs::copy(dir + "/q", dir + "/noconfig", fs::copy_options::recursive);
  std::ofstream(dir + "/noconfig/config.json") << std::ifstream(dir + "/ref/config.json").rdbuf();
  EXPECT_NE(error_of(dir + "/noconfig").find("qweight' in a checkpoint without quantization_config"), std::string::npos)
      << error_of(dir + "/noconfig");
  // AutoGPTQ's separate quantize_config.json is read when config.json has none.
  std::ofstream(dir + "/noconfig/quantize_config.json") << qc;
  EXPECT_EQ(load_llama(dir + "/noconfig").quantized.size(), 20u);
  // A missing part and a config that disagrees with the tensors.
  const auto f = io::SafetensorsFile::open(dir + "/q/model.safetensors");
  io::SafetensorsWriter w;
  for (const auto& e : f.tensors())
    if (e.name != "model.layers.3.self_attn.o_proj.qzeros") w.add(e.name, f.tensor(e.name));
  fs::create_directories(dir + "/missing");
  fs::copy(dir + "/q/config.json", dir + "/missing/config.json");
  w.write(dir + "/missing/model.safetensors");
  EXPECT_NE(error_of(dir + "/missing").find("missing tensor 'model.layers.3.self_attn.o_proj.qzeros'"), std::string::npos)
      << error_of(dir + "/missing");
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir + "/q/config.json"));
  cfg["quantization_config"]["bits"] = 8;
  std::ofstream(dir + "/q/config.json") << cfg.dump();
  const std::string e = error_of(dir + "/q");
  EXPECT_NE(e.find("model.layers.0.self_attn.q_proj"), std::string::npos) << e;
  EXPECT_NE(e.find("has shape"), std::string::npos) << e;
}

}  // namespace tz
