// Shared test helpers: seeded random data, ISA-cap scoping, temp dirs, running the CLI, and the
// location of the real models in ../shared/models (tests skip with a message when absent).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensorzip/cpu.h"
#include "tensorzip/format.h"
#include "tensorzip/lowrank_ops.h"

namespace tz::test {

std::vector<float> random_floats(size_t n, uint32_t seed, float stddev = 1.f);
// A LoRA adapter for an [out, in] layer with Gaussian A [rank, in] (seed) and B [out, rank] (seed + 1).
LoraAdapter random_lora(int64_t out, int64_t in, int64_t rank, float alpha, uint32_t seed, float stddev);
// ‖y − ref‖₂ / ‖ref‖₂ (a non-finite y counts as infinite error).
double rel_l2(const std::vector<float>& y, const std::vector<float>& ref);
// max |y − ref| / max |ref| (a non-finite y counts as infinite error).
double max_rel_err(const std::vector<float>& y, const std::vector<float>& ref);
std::vector<uint16_t> to_bf16(const std::vector<float>& v);

// Every ISA level this machine supports, lowest first.
std::vector<Isa> supported_isas();

// Caps dispatch at `isa` for the scope, then restores the machine's maximum.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa) { reset_isa_cap_for_testing(isa); }
  explicit ScopedIsa(const std::string& cap) { reset_isa_cap_for_testing(cap); }  // one of isa_cap_names()
  ~ScopedIsa() { reset_isa_cap_for_testing(Isa::Amx); }
};

// A fresh empty directory under the system temp dir, removed at exit of the test process.
std::string temp_dir();
std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);
bool file_exists(const std::string& path);

struct CliResult { int code; std::string out, err; };
CliResult run_cli(const std::string& args, const std::string& env = "");

std::string models_dir();  // "" when ../shared/models is not there
std::string fixtures_dir();  // ../shared/fixtures (llama.cpp's reference outputs); may not exist
#define TZ_REQUIRE_MODELS()                                                            \
  do {                                                                                 \
    if (::tz::test::models_dir().empty()) GTEST_SKIP() << "../shared/models not found"; \
  } while (0)

}  // namespace tz::test

namespace tz::test {
// Small valid model files, built in memory (tests and fuzz seed corpora).
std::vector<uint8_t> sample_safetensors();  // F32 [2,3], BF16 [4], I8 [3] + metadata
std::vector<uint8_t> sample_gguf();         // all metadata types + f32/f16/bf16/q8_0/q4_0 tensors
// dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 16, seq 4; values = index * 0.001.
std::vector<uint8_t> sample_llama2c(int version, bool shared);
// A llama2.c tokenizer.bin of 16 pieces (<unk> <s> </s>, a byte piece, letters and merges of
// "Once"): enough to encode short prompts for sample_llama2c's vocab of 16.
std::vector<uint8_t> sample_tokenizer_bin();
}  // namespace tz::test

namespace tz {
struct LlamaSource;
namespace test {
// A model as a Hugging Face directory: config.json (model_type = cfg.arch) and model.safetensors
// with HF names, q/k rows in rotate-half order for the adjacent-pair rotary models, phi3's fused
// qkv_proj / gate_up_proj, gemma2's norms as w of (1 + w); tensors f32 or (bf16) bfloat16.
void write_hf_dir(const LlamaSource& s, const std::string& dir, bool bf16 = false);
// Copies the Hugging Face directory `dense_dir` to `qdir` as an AutoAWQ / GPTQ checkpoint
// (`qconfig`: its quantization_config): every *_proj.weight the layout can hold becomes RTN codes
// (v1 zeros kept ≥ 1; a random act-order permutation when asked), the rest stays dense; and to
// `ref_dir` with those projections replaced by their dequantized values.
struct HfQuantRewrite {
  std::map<std::string, QuantMatrix> codes;  // HF module name → the codes packed (without act-order)
  int quantized = 0, dense = 0;              // projections
};
HfQuantRewrite write_hf_quantized_dir(const std::string& dense_dir, const std::string& qdir, const std::string& ref_dir,
                                      const std::string& qconfig, bool act_order, uint32_t seed);
}  // namespace test
}  // namespace tz

// Sanitizer builds: some tests (address-space limits) cannot run under ASan.
#if defined(__SANITIZE_ADDRESS__)
#define TZ_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TZ_TEST_ASAN 1
#endif
#endif
