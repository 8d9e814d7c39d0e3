// AutoAWQ GEMM and GPTQ layouts: hand-built words pin each layout; pack/unpack round trips over
// every bit width, act-order, v1/v2 zeros and odd shapes; every malformed config and tensor refused.
#include "tensorzip/io/hf_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tests/test_util.h"

namespace tz::io {
namespace {

HfQuantConfig awq_config(int group = 32) {
  return parse_hf_quant_config(R"({"quant_method":"awq","bits":4,"group_size":)" + std::to_string(group) +
                                   R"(,"zero_point":true,"version":"gemm","modules_to_not_convert":null})",
                               "cfg");
}

HfQuantConfig gptq_config(int bits, int group, bool desc_act, const char* format = "gptq", bool sym = false) {
  return parse_hf_quant_config(R"({"quant_method":"gptq","bits":)" + std::to_string(bits) + R"(,"group_size":)" + std::to_string(group) +
                                   R"(,"desc_act":)" + (desc_act ? "true" : "false") + R"(,"sym":)" + (sym ? "true" : "false") +
                                   R"(,"checkpoint_format":")" + format + R"(","damp_percent":0.01,"true_sequential":true,"static_groups":false})",
                               "cfg");
}

// Random codes, f16-exact positive scales and integer zeros in [zlo, zhi].
QuantMatrix random_matrix(int64_t rows, int64_t cols, int bits, int group, int zlo, int zhi, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantMatrix q;
  q.fmt.bits = bits;
  q.fmt.group = group;
  q.fmt.symmetric = false;
  q.fmt.scale_dtype = DType::F16;
  q.rows = rows;
  q.cols = cols;
  const int64_t ng = q.groups_per_row();
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  q.codes.resize(size_t(rows) * q.packed_row_bytes());
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& c : codes) c = uint8_t(rng() % (1u << bits));
    pack_codes_ref(codes.data(), cols, bits, q.codes.data() + size_t(r) * q.packed_row_bytes());
  }
  std::uniform_real_distribution<float> u(0.001f, 0.1f);
  for (int64_t i = 0; i < rows * ng; ++i) {
    q.scales.push_back(f16_to_f32_scalar(f32_to_f16_scalar(u(rng))));
    q.zeros.push_back(float(zlo + int(rng() % uint32_t(zhi - zlo + 1))));
  }
  return q;
}

// Dequantized W [rows, cols] in the original input order (column j of q is input perm[j]).
std::vector<float> dense_of(const QuantMatrix& q, const std::vector<int32_t>& perm) {
  std::vector<float> w(size_t(q.rows * q.cols)), out(w.size());
  dequantize_ref(q, w.data());
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t j = 0; j < q.cols; ++j) out[size_t(r * q.cols + (perm.empty() ? j : perm[size_t(j)]))] = w[size_t(r * q.cols + j)];
  return out;
}

// An act-order permutation: whole groups keep `group` inputs, in a random order of inputs.
std::vector<int32_t> random_perm(int64_t n, uint32_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), std::mt19937(seed));
  return p;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// AutoAWQ's order_map [0,2,4,6,1,3,5,7]: nibble i of a word holds column order_map[i].
TEST(HfQuant, AwqGemmWordLayoutIsAutoAwqs) {
  QuantMatrix q = random_matrix(8, 32, 4, 32, 0, 15, 1);
  std::vector<uint8_t> codes(32, 0);
  for (int64_t r = 0; r < 8; ++r) {
    codes[0] = uint8_t(r);  // input 0 of output r holds r
    pack_codes_ref(codes.data(), 32, 4, q.codes.data() + size_t(r) * q.packed_row_bytes());
    q.zeros[size_t(r)] = float(15 - r);
  }
  const HfQuantTensors t = pack_hf_quant(awq_config(), q);
  ASSERT_EQ(t.qweight.shape(), (Shape{32, 1}));
  EXPECT_EQ(uint32_t(t.qweight.data<int32_t>()[0]), 0x75316420u);  // nibbles 0,2,4,6,1,3,5,7
  EXPECT_EQ(uint32_t(t.qzeros.data<int32_t>()[0]), 0x8ACE9BDFu);   // 15 − the same columns
  ASSERT_EQ(t.scales.dtype(), DType::F16);
  EXPECT_EQ(f16_to_f32_scalar(t.scales.data<uint16_t>()[3]), q.scales[3]);  // scales [groups, out]
  EXPECT_FALSE(t.g_idx.defined() && t.g_idx.numel() > 0);
}

// GPTQ: each output's column of words is one little-endian bit stream along the inputs; 3-bit
// values straddle words (input 10 takes bits 30, 31 and the next word's bit 0). v1 stores zero − 1.
TEST(HfQuant, GptqWordLayoutIsAutoGptqs) {
  QuantMatrix q4 = random_matrix(32, 8 * 4, 4, 0, 1, 16, 2);
  std::vector<uint8_t> codes(32);
  for (int i = 0; i < 32; ++i) codes[size_t(i)] = uint8_t(i % 16);
  pack_codes_ref(codes.data(), 32, 4, q4.codes.data());
  q4.zeros[0] = 9;
  const HfQuantTensors t4 = pack_hf_quant(gptq_config(4, -1, false), q4);
  ASSERT_EQ(t4.qweight.shape(), (Shape{4, 32}));  // [in·bits/32, out]
  EXPECT_EQ(uint32_t(t4.qweight.data<int32_t>()[0]), 0x76543210u);       // inputs 0..7 of output 0
  EXPECT_EQ(uint32_t(t4.qweight.data<int32_t>()[32]), 0xFEDCBA98u);      // inputs 8..15
  EXPECT_EQ(uint32_t(t4.qzeros.data<int32_t>()[0]) & 15u, 8u);           // zero 9, stored as 8
  EXPECT_EQ(t4.g_idx.numel(), 32);

  QuantMatrix q3 = random_matrix(32, 32, 3, 0, 0, 7, 3);
  std::fill(codes.begin(), codes.end(), 0);
  codes[10] = 5;  // 0b101 at bit 30: bit 30 set, bit 31 clear, next word's bit 0 set
  codes[21] = 3;  // 0b011 at bit 63: word 1 bit 31 set, word 2 bit 0 set
  pack_codes_ref(codes.data(), 32, 3, q3.codes.data());
  const HfQuantTensors t3 = pack_hf_quant(gptq_config(3, -1, false, "gptq_v2"), q3);
  ASSERT_EQ(t3.qweight.shape(), (Shape{3, 32}));
  EXPECT_EQ(uint32_t(t3.qweight.data<int32_t>()[0]), 1u << 30);
  EXPECT_EQ(uint32_t(t3.qweight.data<int32_t>()[32]), 1u | (1u << 31));
  EXPECT_EQ(uint32_t(t3.qweight.data<int32_t>()[64]), 1u);
}

TEST(HfQuant, RoundTripsKeepEveryCode) {
  struct Case {
    HfQuantConfig cfg;
    int64_t rows, cols;
    bool act_order;
  };
  const std::vector<Case> cases = {
      {awq_config(32), 8, 32, false},           {awq_config(128), 24, 256, false},      {awq_config(64), 40, 192, false},
      {gptq_config(2, 32, false), 16, 64, false}, {gptq_config(3, 32, true), 32, 96, true}, {gptq_config(4, 128, true), 8, 4096 - 128 + 32, true},
      {gptq_config(8, 32, false), 4, 172, false}, {awq_config(-1), 16, 96, false}, {gptq_config(4, -1, false, "gptq_v2"), 8, 64, false},
      {gptq_config(3, 64, true, "gptq_v2"), 32, 320, true}, {gptq_config(8, 64, true), 12, 100, true},
  };
  uint32_t seed = 10;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cfg.name() + " [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) + "]");
    const int zmax = c.cfg.method == HfQuantConfig::Method::Awq || !c.cfg.zeros_minus_one ? (1 << c.cfg.bits) - 1 : 1 << c.cfg.bits;
    const QuantMatrix q = random_matrix(c.rows, c.cols, c.cfg.bits, c.cfg.group, c.cfg.zeros_minus_one ? 1 : 0, zmax, seed++);
    const std::vector<int32_t> perm = c.act_order ? random_perm(c.cols, seed++) : std::vector<int32_t>{};
    const HfQuantLinear u = unpack_hf_quant(c.cfg, pack_hf_quant(c.cfg, q, perm), "layer");
    EXPECT_EQ(u.q.rows, q.rows);
    EXPECT_EQ(u.q.cols, q.cols);
    EXPECT_EQ(u.q.fmt.bits, q.fmt.bits);
    EXPECT_EQ(u.q.fmt.group, q.fmt.group);
    EXPECT_EQ(u.q.scales, q.scales);
    EXPECT_EQ(u.q.zeros, q.zeros);
    if (!c.act_order) {
      EXPECT_TRUE(u.input_perm.empty());
      EXPECT_EQ(u.q.codes, q.codes);  // byte for byte
    } else {
      EXPECT_EQ(u.input_perm.size(), size_t(c.cols));
      EXPECT_EQ(dense_of(u.q, u.input_perm), dense_of(q, perm));  // the same codes, gathered group by group
    }
  }
}

TEST(HfQuant, ConfigsOutsideTheLayoutsAreRefusedByName) {
  EXPECT_EQ(gptq_config(4, 128, true).name(), "gptq 4-bit g128 asym act-order");
  EXPECT_TRUE(gptq_config(4, 128, false).zeros_minus_one);
  EXPECT_FALSE(gptq_config(4, 128, false, "gptq_v2").zeros_minus_one);
  EXPECT_EQ(awq_config(128).name(), "awq 4-bit g128");
  // AutoAWQ's own quant_config.json spelling.
  EXPECT_EQ(parse_hf_quant_config(R"({"quant_method":"awq","w_bit":4,"q_group_size":64,"zero_point":true,"version":"GEMM"})", "c").group, 64);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"quant_method":"bitsandbytes","bits":4})", "quant_method"},
      {R"({"bits":4})", "quant_method"},
      {R"({"quant_method":"awq","bits":4,"group_size":128,"version":"gemv"})", "version 'gemv'"},
      {R"({"quant_method":"awq","bits":4,"group_size":128,"zero_point":false})", "zero_point"},
      {R"({"quant_method":"awq","bits":3,"group_size":128})", "3 bits"},
      {R"({"quant_method":"gptq","bits":5,"group_size":128})", "5 bits"},
      {R"({"quant_method":"gptq","bits":4,"group_size":0})", "group_size 0"},
      {R"({"quant_method":"gptq","bits":4.5,"group_size":128})", "bits"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128,"checkpoint_format":"marlin"})", "checkpoint_format 'marlin'"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128,"pack_dtype":"int16"})", "pack_dtype"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128,"dynamic":{"-:.*down":{}}})", "'dynamic'"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128,"sym":"yes"})", "'sym'"},
      {R"({"quant_method":"gptq","bits":4,"group_size":128,"weight_block_size":[128,128]})", "field 'weight_block_size'"},
      {R"([1,2])", "not an object"},
  };
  for (const auto& [config, want] : bad) {
    const std::string text = config;  // (clang cannot capture a structured binding)
    const std::string e = error_of([&] { parse_hf_quant_config(text, "model/config.json"); });
    EXPECT_NE(e.find("model/config.json: quantization_config"), std::string::npos) << text << " -> " << e;
    EXPECT_NE(e.find(want), std::string::npos) << text << " -> " << e;
  }
}

TEST(HfQuant, MalformedTensorsAreRefusedByName) {
  const HfQuantConfig cfg = gptq_config(4, 32, true);
  const QuantMatrix q = random_matrix(32, 64, 4, 32, 1, 16, 7);
  const HfQuantTensors good = pack_hf_quant(cfg, q);
  ASSERT_NO_THROW(unpack_hf_quant(cfg, good, "m.layers.0.q_proj"));
  const auto expect = [&](HfQuantTensors t, const std::string& want) {
    const std::string e = error_of([&] { unpack_hf_quant(cfg, t, "m.layers.0.q_proj"); });
    EXPECT_NE(e.find("m.layers.0.q_proj"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  };
  HfQuantTensors t = good;
  t.qzeros = Tensor::zeros(DType::I32, {3, 4});
  expect(t, "qzeros has shape");
  t = good;
  t.scales = Tensor::zeros(DType::F16, {2, 31});
  expect(t, "scales has shape");
  t = good;
  t.qweight = Tensor::zeros(DType::F32, good.qweight.shape());
  expect(t, "qweight must be");
  t = good;
  t.scales = good.scales.clone();
  t.scales.data<uint16_t>()[5] = 0x7E00;  // NaN
  expect(t, "scales: value 5 is not finite");
  t = good;
  t.g_idx = good.g_idx.clone();
  t.g_idx.data<int32_t>()[3] = 9;
  expect(t, "g_idx[3] = 9 is not a group");
  t.g_idx.data<int32_t>()[3] = 1;  // group 1 gets 33 inputs, group 0 31
  expect(t, "does not hold 32 inputs");
  t = good;
  t.g_idx = Tensor::zeros(DType::I32, {63});
  expect(t, "g_idx has shape");
  // The packer refuses what the layout cannot store.
  QuantMatrix z0 = q;
  z0.zeros[0] = 0;  // v1 stores zero − 1
  EXPECT_THROW(pack_hf_quant(cfg, z0), Error);
  EXPECT_THROW(pack_hf_quant(awq_config(32), random_matrix(12, 64, 4, 32, 0, 15, 8)), Error);  // 12 outputs: not whole words
}

}  // namespace tz::io
