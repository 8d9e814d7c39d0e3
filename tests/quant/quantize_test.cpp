// The quantizers against each other on synthetic correlated activations with outlier channels,
// their identities, the runtime layer against the dense reconstruction, tensorzip file round
// trips, and layer-by-layer compression of the real model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "tensorzip/compress.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/quantize.h"
#include "tensorzip/runtime.h"
#include "tests/test_util.h"

namespace tz {
namespace {

// X = Z·M (correlated channels) with a few channels scaled up 20x (LLM.int8-style outliers).
std::vector<float> activations(int64_t n, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> m(size_t(in * in)), z(size_t(n * in)), x(size_t(n * in), 0.f);
  std::mt19937 mrng(99);  // the same mixing for every batch
  for (auto& v : m) v = nd(mrng) / std::sqrt(float(in));
  for (auto& v : z) v = nd(rng);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < in; ++k) {
      const float zk = z[size_t(i * in + k)];
      for (int64_t j = 0; j < in; ++j) x[size_t(i * in + j)] += zk * m[size_t(k * in + j)];
    }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j : {3, 17, 100, 201})
      if (j < in) x[size_t(i * in + j)] *= 20.f;
  return x;
}

struct Fixture {
  int64_t rows = 96, cols = 256;
  std::vector<float> w = test::random_floats(size_t(96 * 256), 5, 0.05f);
  ActStats calib{256, true, 1024}, held_out{256, false, 4096};
  Fixture() {
    const auto a = activations(2048, cols, 1), b = activations(1024, cols, 2);
    calib.add(a.data(), 2048);
    held_out.add(b.data(), 1024);
  }
  double out_err(const CompressedLinear& c) {
    std::vector<float> wh(w.size());
    c.dequantize(wh.data());
    return quant_error(w.data(), wh.data(), rows, cols, &held_out).output_rel;
  }
  CompressedLinear run(QuantMethod m, int bits, int outliers = 0, int rank = 0, LowRankMethod lm = LowRankMethod::Eora) {
    QuantizeOptions o;
    o.method = m;
    o.fmt.bits = bits;
    o.fmt.group = 32;
    o.outliers = outliers;
    o.lowrank = rank;
    o.lowrank_method = lm;
    return compress_linear(w.data(), rows, cols, &calib, o);
  }
};

TEST(Quantize, RtnEqualsTheReference) {
  const auto w = test::random_floats(64 * 160, 3);
  for (QuantFormat f : {QuantFormat{4, 32, true, false, DType::F32}, QuantFormat{3, 64, false, false, DType::F16},
                        QuantFormat{1, 32, true, false, DType::F32}, QuantFormat{2, 0, true, true, DType::F32}}) {
    QuantizeOptions o;
    o.method = f.ternary ? QuantMethod::Ternary : QuantMethod::Rtn;
    o.fmt = f;
    const auto c = compress_linear(w.data(), 64, 160, nullptr, o);
    const auto r = quantize_rtn_ref(w.data(), 64, 160, f);
    EXPECT_EQ(c.q.codes, r.codes) << f.to_string();
    EXPECT_EQ(c.q.scales, r.scales) << f.to_string();
    EXPECT_EQ(c.q.zeros, r.zeros) << f.to_string();
    std::vector<float> a(w.size()), b(w.size());
    c.dequantize(a.data());
    dequantize_ref(r, b.data());
    EXPECT_EQ(a, b);
  }
}

TEST(Quantize, CalibratedMethodsBeatRtn) {
  Fixture fx;
  const double rtn = fx.out_err(fx.run(QuantMethod::Rtn, 3));
  const double gptq = fx.out_err(fx.run(QuantMethod::Gptq, 3));
  const double awq = fx.out_err(fx.run(QuantMethod::Awq, 3));
  const double outl = fx.out_err(fx.run(QuantMethod::Rtn, 3, 4));
  const double gptq_eora = fx.out_err(fx.run(QuantMethod::Gptq, 3, 0, 8));
  const double lq = fx.out_err(fx.run(QuantMethod::Rtn, 3, 0, 8, LowRankMethod::LqLora));
  const double rtn_svd = fx.out_err(fx.run(QuantMethod::Rtn, 3, 0, 8, LowRankMethod::Svd));
  QuantizeOptions ag;
  ag.method = QuantMethod::Gptq;
  ag.gptq_awq = true;
  ag.fmt.bits = 3;
  ag.fmt.group = 32;
  const double awq_gptq = fx.out_err(compress_linear(fx.w.data(), fx.rows, fx.cols, &fx.calib, ag));
  EXPECT_LT(awq_gptq, 0.9 * rtn);
  std::printf("held-out output error, 3-bit g32: rtn %.4f gptq %.4f awq %.4f awq+gptq %.4f rtn+outliers(4) %.4f "
              "gptq+eora(8) %.4f lqlora(8) %.4f rtn+svd(8) %.4f\n", rtn, gptq, awq, awq_gptq, outl, gptq_eora, lq, rtn_svd);
  EXPECT_LT(gptq, 0.9 * rtn);
  EXPECT_LT(awq, 0.95 * rtn);
  EXPECT_LT(outl, 0.9 * rtn);
  EXPECT_LT(gptq_eora, gptq);
  EXPECT_LT(lq, rtn);
  EXPECT_LT(rtn_svd, rtn);
}

TEST(Quantize, GptqActOrderAndTernary) {
  Fixture fx;
  QuantizeOptions o;
  o.method = QuantMethod::Gptq;
  o.fmt.bits = 4;
  o.fmt.group = 64;
  o.act_order = true;
  const auto c = compress_linear(fx.w.data(), fx.rows, fx.cols, &fx.calib, o);
  EXPECT_LT(fx.out_err(c), fx.out_err(fx.run(QuantMethod::Rtn, 4)));
  // Ternary: codes in {0, 1, 2}, scales = mean |w| per row.
  o.method = QuantMethod::Ternary;
  o.fmt.group = 0;
  const auto t = compress_linear(fx.w.data(), fx.rows, fx.cols, nullptr, o);
  EXPECT_TRUE(t.q.fmt.ternary);
  double mean = 0;
  for (int64_t j = 0; j < fx.cols; ++j) mean += std::fabs(fx.w[size_t(j)]);
  EXPECT_NEAR(t.q.scales[0], mean / double(fx.cols), 1e-6);
}

TEST(Quantize, RuntimeLayerEqualsReconstruction) {
  Fixture fx;
  QuantizeOptions o;
  o.method = QuantMethod::Awq;
  o.fmt.bits = 4;
  o.fmt.group = 64;
  o.outliers = 4;
  o.lowrank = 6;
  const CompressedLinear c = compress_linear(fx.w.data(), fx.rows, fx.cols, &fx.calib, o);
  ASSERT_FALSE(c.input_scale.empty());
  ASSERT_EQ(c.outlier_cols.size(), 4u);
  std::vector<float> wh(fx.w.size());
  c.dequantize(wh.data());
  const Linear l = Linear::from_compressed(c);
  for (int64_t n : {1, 7, 33}) {
    const auto x = activations(n, fx.cols, 7);
    std::vector<float> y(size_t(n * fx.rows)), ref(size_t(n * fx.rows));
    l.forward(x.data(), n, y.data());
    gemm_f32_ref(n, fx.rows, fx.cols, x.data(), fx.cols, wh.data(), fx.cols, ref.data(), fx.rows);
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      num = std::max(num, double(std::fabs(y[i] - ref[i])));
      den = std::max(den, double(std::fabs(ref[i])));
    }
    EXPECT_LE(num / den, 2e-2) << n;  // the LUT kernel's int8 tables (mpgemm.h)
  }
}

TEST(Quantize, BadInputIsRefused) {
  Fixture fx;
  QuantizeOptions o;
  o.method = QuantMethod::Gptq;
  EXPECT_THROW(compress_linear(fx.w.data(), fx.rows, fx.cols, nullptr, o), Error);  // no calibration
  ActStats narrow(128, true);
  const auto a = activations(16, 128, 3);
  narrow.add(a.data(), 16);
  EXPECT_THROW(compress_linear(fx.w.data(), fx.rows, fx.cols, &narrow, o), Error);  // wrong width
  auto bad = fx.w;
  bad[77] = NAN;
  o.method = QuantMethod::Rtn;
  EXPECT_THROW(compress_linear(bad.data(), fx.rows, fx.cols, nullptr, o), Error);
  o.lowrank = 200;
  EXPECT_THROW(compress_linear(fx.w.data(), fx.rows, fx.cols, nullptr, o), Error);
  std::vector<float> nan_x(256, NAN);
  EXPECT_THROW(narrow.add(nan_x.data(), 1), Error);
}

// ---------------------------------------------------------------- models

std::string text(const std::string& f) {
  std::ifstream in(f, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double mean_nll(const LlamaModel& m, const std::vector<std::vector<int>>& docs) {
  LlamaSession s(m);
  return evaluate_perplexity(s, docs, m.config().seq_len, m.config().seq_len).mean_nll;
}

TEST(Compress, TensorzipFileRoundTripIsExact) {
  LlamaConfig c{128, 256, 2, 4, 2, 96, 32};
  const LlamaSource src = synthetic_llama(c, 4);
  std::vector<std::vector<int>> calib = {{1, 5, 9, 33, 2, 7, 80, 81, 3, 4, 5, 6}, {1, 60, 61, 62, 9, 9, 9}};
  CompressOptions o;
  o.quant.method = QuantMethod::Awq;
  o.quant.fmt.bits = 3;
  o.quant.fmt.group = 64;
  o.quant.fmt.symmetric = false;
  o.quant.outliers = 2;
  o.quant.lowrank = 4;
  o.include = {"layers.*", "output"};
  o.exclude = {"layers.1.attention.wk"};
  const auto res = compress_llama(src, calib, o);
  EXPECT_EQ(res.layers.size(), size_t(2 * 7 - 1 + 1));
  EXPECT_EQ(res.model.quantized.count("layers.1.attention.wk"), 0u);
  const Tokenizer tok = Tokenizer::parse_hf_json(R"({"model":{"type":"BPE","vocab":{"<unk>":0,"<s>":1,"</s>":2,"a":3},"merges":[]}})", "t.json");
  const std::string dir = test::temp_dir();
  write_tensorzip(res.model, &tok, dir + "/m.tz");
  const LlamaSource back = load_llama(dir + "/m.tz");
  ASSERT_TRUE(back.tokenizer.has_value());
  EXPECT_EQ(back.tokenizer->encode("aaa", true), tok.encode("aaa", true));
  ASSERT_EQ(back.quantized.size(), res.model.quantized.size());
  for (const auto& [name, a] : res.model.quantized) {
    const auto& b = back.quantized.at(name);
    EXPECT_EQ(a.q.codes, b.q.codes) << name;
    EXPECT_EQ(a.q.scales, b.q.scales) << name;
    EXPECT_EQ(a.q.zeros, b.q.zeros) << name;
    EXPECT_EQ(a.input_scale, b.input_scale) << name;
    EXPECT_EQ(a.outlier_cols, b.outlier_cols) << name;
    EXPECT_EQ(a.outlier_w, b.outlier_w) << name;
    EXPECT_EQ(a.lora_l, b.lora_l) << name;
    EXPECT_EQ(a.lora_r, b.lora_r) << name;
  }
  // The model from the file computes exactly what the in-memory one does.
  const std::vector<int> ids = {1, 4, 8, 15, 16, 23, 42};
  const LlamaModel m1(res.model, FormatSpec("native")), m2(back, FormatSpec("native"));
  LlamaSession s1(m1), s2(m2);
  std::vector<float> l1(96 * 7), l2(96 * 7);
  s1.forward(ids.data(), 7, 0, l1.data(), true);
  s2.forward(ids.data(), 7, 0, l2.data(), true);
  EXPECT_EQ(l1, l2);
  // A damaged file is refused with its name; nothing half-read.
  auto bytes = test::read_file(dir + "/m.tz");
  bytes.resize(bytes.size() / 2);
  test::write_file(dir + "/cut.tz", bytes);
  try {
    load_llama(dir + "/cut.tz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.tz"), std::string::npos) << e.what();
  }
}

// Mean KL(teacher ‖ student) per token over `seqs`, both run by the runner (student dequantized).
double mean_kl(const LlamaSource& teacher, const LlamaSource& student, const std::vector<std::vector<int>>& seqs) {
  const LlamaModel tm(teacher, FormatSpec("f32")), sm(student, FormatSpec("f32"));
  const int V = teacher.cfg.vocab_size;
  double kl = 0;
  int64_t n = 0;
  for (const auto& s : seqs) {
    LlamaSession ts(tm), ss(sm);
    std::vector<float> a(s.size() * size_t(V)), b(s.size() * size_t(V));
    ts.forward(s.data(), int(s.size()), 0, a.data(), true);
    ss.forward(s.data(), int(s.size()), 0, b.data(), true);
    for (size_t t = 0; t < s.size(); ++t) {
      const float* za = &a[t * size_t(V)];
      const float* zb = &b[t * size_t(V)];
      double ma = za[0], mb = zb[0], sa = 0, sb = 0;
      for (int i = 0; i < V; ++i) ma = std::max(ma, double(za[i])), mb = std::max(mb, double(zb[i]));
      for (int i = 0; i < V; ++i) sa += std::exp(za[i] - ma), sb += std::exp(zb[i] - mb);
      for (int i = 0; i < V; ++i) {
        const double la = za[i] - ma - std::log(sa), lb = zb[i] - mb - std::log(sb);
        kl += std::exp(la) * (la - lb);
      }
      ++n;
    }
  }
  return kl / double(n);
}

TEST(Compress, TuningLowersTheKlAndKeepsTheFormat) {
  LlamaConfig c{64, 96, 2, 4, 2, 60, 32};
  const LlamaSource src = synthetic_llama(c, 6);
  std::mt19937 rng(3);
  std::vector<std::vector<int>> calib(24);
  for (auto& s : calib) {
    s.resize(8 + rng() % 20);
    for (int& t : s) t = int(rng() % 60);
  }
  CompressOptions o;
  o.quant.method = QuantMethod::Awq;  // stored input scales, outliers and a low-rank branch: every part of a layer
  o.fold_awq = false;
  o.quant.fmt.bits = 3;
  o.quant.fmt.group = 32;
  o.quant.fmt.symmetric = false;
  o.quant.fmt.scale_dtype = DType::F16;
  o.quant.outliers = 2;
  o.quant.lowrank = 2;
  o.include = {"layers.*", "output"};
  const CompressResult base = compress_llama(src, calib, o);
  for (bool codes : {false, true}) {
    LlamaSource tuned = base.model;
    TuneOptions t;
    t.epochs = 6;
    t.lr = 1e-2;
    t.batch = 4;
    t.codes = codes;
    t.norms = codes;
    t.embedding = codes;
    t.codes_lr = 0.04;
    const TuneReport r = tune_quantized(src, tuned, calib, t);
    // Its own measure before and after equals the runner's on the stored model.
    EXPECT_NEAR(r.kl_before, mean_kl(src, base.model, calib), 1e-3 * r.kl_before);
    EXPECT_NEAR(r.kl_after, mean_kl(src, tuned, calib), 1e-3 * r.kl_after);
    EXPECT_LT(r.kl_after, 0.8 * r.kl_before) << "codes " << codes;
    EXPECT_EQ(r.steps, 6 * 6);
    EXPECT_EQ(r.codes_changed > 0, codes);
    for (const auto& [name, q] : tuned.quantized) {
      const auto& q0 = base.model.quantized.at(name);
      EXPECT_EQ(q.q.fmt.spec(), q0.q.fmt.spec());
      EXPECT_EQ(q.q.zeros, q0.q.zeros) << name;
      EXPECT_EQ(q.outlier_w, q0.outlier_w) << name;
      EXPECT_EQ(q.input_scale, q0.input_scale) << name;
      EXPECT_NE(q.q.scales, q0.q.scales) << name;
      for (float v : q.q.scales) EXPECT_EQ(v, f16_to_f32_scalar(f32_to_f16_scalar(v))) << name;  // still f16
      if (!codes) EXPECT_EQ(q.q.codes, q0.q.codes) << name;
      // Outlier columns keep their zero weight in the low-bit part.
      std::vector<float> w(size_t(q.rows() * q.cols())), w0(w.size());
      QuantMatrix a = q.q, b = q0.q;
      std::fill(a.scales.begin(), a.scales.end(), 1.f);
      std::fill(b.scales.begin(), b.scales.end(), 1.f);
      dequantize_ref(a, w.data());
      dequantize_ref(b, w0.data());
      for (int32_t col : q.outlier_cols)
        for (int64_t r2 = 0; r2 < q.rows(); ++r2) EXPECT_EQ(w[size_t(r2 * q.cols() + col)], w0[size_t(r2 * q.cols() + col)]);
    }
    EXPECT_EQ(tuned.tensors.at("tok_embeddings").data<float>()[0] != src.tensors.at("tok_embeddings").data<float>()[0], codes);
  }
  // The same on one thread as on two: per-sequence gradients summed in batch order.
  {
    TuneOptions t;
    t.epochs = 2;
    t.codes = true;
    t.codes_lr = 0.04;
    LlamaSource a = base.model, b = base.model;
    const int threads = num_threads();
    set_num_threads(1);
    tune_quantized(src, a, calib, t);
    set_num_threads(2);
    tune_quantized(src, b, calib, t);
    set_num_threads(threads);
    for (const auto& [name, q] : a.quantized) {
      EXPECT_EQ(q.q.scales, b.quantized.at(name).q.scales) << name;
      EXPECT_EQ(q.q.codes, b.quantized.at(name).q.codes) << name;
    }
  }
  // Through compress_llama, and refused where it cannot run.
  o.tune.epochs = 1;
  EXPECT_GT(compress_llama(src, calib, o).tune.steps, 0);
  EXPECT_THROW(compress_llama(src, {}, o), Error);
  LlamaSource other = base.model;
  TuneOptions t;
  t.epochs = 1;
  EXPECT_THROW(tune_quantized(src, other, {}, t), Error);
  t.epochs = 0;
  EXPECT_THROW(tune_quantized(src, other, calib, t), Error);
  t.epochs = 1;
  const LlamaSource wrong = synthetic_llama(LlamaConfig{64, 96, 1, 4, 2, 60, 32}, 6);
  EXPECT_THROW(tune_quantized(wrong, other, calib, t), Error);
  EXPECT_THROW(tune_quantized(src, other, {{1, 2, 60}}, t), Error);  // a token outside the vocabulary
  LlamaSource dense = src;
  EXPECT_THROW(tune_quantized(src, dense, calib, t), Error);  // nothing compressed
  EXPECT_THROW(compress_tensors(src, nullptr, o), Error);
}

// stories260K, 60 held-out documents to score and 160 to calibrate on (shared by the two tests
// below, which ctest runs side by side: together they were a third of the suite's time).
struct RealModelSetup {
  LlamaSource src;
  std::vector<std::vector<int>> eval, calib;
  double f32 = 0;
  RealModelSetup() {
    const std::string dir = test::models_dir();
    src = load_llama2c(dir + "/stories260K/stories260K.bin");
    const Tokenizer tok = Tokenizer::from_llama2c(dir + "/stories260K/tok512.bin", 512);
    auto docs = split_documents(text(dir + "/eval-text/tinystories_valid_head.txt"), tok, "\n\n", 260, 256);
    eval.assign(docs.begin(), docs.begin() + 60);
    calib.assign(docs.begin() + 100, docs.end());
    f32 = mean_nll(LlamaModel(src, FormatSpec("f32")), eval);
  }
};

TEST(Compress, RealModelQualityOrdering) {
  TZ_REQUIRE_MODELS();
  const RealModelSetup r;
  const auto nll = [&](QuantMethod m, int bits, int rank, bool fold = false) {
    CompressOptions o;
    o.fold_awq = fold;  // stored per-layer scales: the search's own optimum (folding shares one per input)
    o.quant.method = m;
    o.quant.fmt.bits = bits;
    o.quant.fmt.group = 32;
    o.quant.fmt.symmetric = false;
    o.quant.lowrank = rank;
    return mean_nll(LlamaModel(compress_llama(r.src, r.calib, o).model, FormatSpec("native")), r.eval);
  };
  const double rtn3 = nll(QuantMethod::Rtn, 3, 0), gptq3 = nll(QuantMethod::Gptq, 3, 0), awq3 = nll(QuantMethod::Awq, 3, 0);
  const double gptq2 = nll(QuantMethod::Gptq, 2, 0), gptq2r = nll(QuantMethod::Gptq, 2, 8);
  const double awq3_folded = nll(QuantMethod::Awq, 3, 0, true);
  std::printf("stories260K mean NLL on 60 held-out documents: f32 %.4f | 3-bit rtn %.4f gptq %.4f awq %.4f (folded %.4f) | "
              "2-bit gptq %.4f, +eora(8) %.4f\n", r.f32, rtn3, gptq3, awq3, awq3_folded, gptq2, gptq2r);
  EXPECT_LT(gptq3, rtn3);
  EXPECT_LT(awq3, rtn3);
  EXPECT_LT(gptq2r, gptq2);
  EXPECT_LT(awq3_folded, rtn3 * 1.005);
  EXPECT_GT(rtn3, r.f32);
}

// End-to-end tuning (scales and codes) of the 4-bit GPTQ model lowers the held-out NLL.
TEST(Compress, RealModelTuningLowersHeldOutNll) {
  TZ_REQUIRE_MODELS();
  const RealModelSetup r;
  CompressOptions o4;
  o4.quant.method = QuantMethod::Gptq;
  o4.quant.fmt.bits = 4;
  o4.quant.fmt.group = 32;
  o4.quant.fmt.symmetric = false;
  o4.quant.fmt.scale_dtype = DType::F16;
  const CompressResult g4 = compress_llama(r.src, r.calib, o4);
  LlamaSource tuned = g4.model;
  TuneOptions t;
  t.epochs = 4;
  t.codes = true;
  t.codes_lr = 0.02;
  const TuneReport tr = tune_quantized(r.src, tuned, r.calib, t);
  const double gptq4 = mean_nll(LlamaModel(g4.model, FormatSpec("native")), r.eval);
  const double tuned4 = mean_nll(LlamaModel(tuned, FormatSpec("native")), r.eval);
  std::printf("4-bit gptq %.4f, tuned %.4f (KL on calibration %.4f -> %.4f, %lld codes moved)\n", gptq4, tuned4, tr.kl_before,
              tr.kl_after, (long long)tr.codes_changed);
  EXPECT_LT(tuned4, gptq4 - 0.2 * (gptq4 - r.f32));
}

}  // namespace
}  // namespace tz
