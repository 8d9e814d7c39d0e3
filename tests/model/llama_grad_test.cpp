// LlamaGrad: its forward equals the runner's on f32 weights, and its backward equals central finite
// differences of the same loss, for every weight and norm tensor (grouped-query attention, odd sizes).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/llama_grad.h"
#include "tests/test_util.h"

namespace tz {
namespace {

// The view over a LlamaSource's f32 tensors (non-const: the finite differences perturb them).
LlamaWeightsView view_of(LlamaSource& s) {
  LlamaWeightsView v;
  const auto p = [&](const std::string& n) { return s.tensors.at(n).data<float>(); };
  v.embedding = p("tok_embeddings");
  v.output = s.tied() ? v.embedding : p("output");
  v.final_norm = p("norm");
  for (int l = 0; l < s.cfg.n_layers; ++l) {
    const std::string q = "layers." + std::to_string(l) + ".";
    v.layers.push_back({p(q + "attention_norm"), p(q + "ffn_norm"), p(q + "attention.wq"), p(q + "attention.wk"),
                        p(q + "attention.wv"), p(q + "attention.wo"), p(q + "feed_forward.w1"), p(q + "feed_forward.w2"),
                        p(q + "feed_forward.w3")});
  }
  return v;
}

TEST(LlamaGrad, ForwardMatchesRunner) {
  const LlamaConfig c{64, 96, 2, 8, 2, 50, 40};
  LlamaSource src = synthetic_llama(c, 5);
  std::vector<int> ids;
  std::mt19937 rng(2);
  for (int i = 0; i < 37; ++i) ids.push_back(int(rng() % 50));
  const LlamaModel m(src, FormatSpec("f32"));
  LlamaSession s(m);
  std::vector<float> want(ids.size() * 50), got(ids.size() * 50);
  s.forward(ids.data(), int(ids.size()), 0, want.data(), true);
  LlamaGrad g(c, 40);
  g.forward(view_of(src), ids.data(), int(ids.size()), got.data());
  double err = 0, mx = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, double(std::fabs(got[i] - want[i])));
    mx = std::max(mx, double(std::fabs(want[i])));
  }
  EXPECT_LE(err, 1e-5 * mx) << "max |logit| " << mx;
  EXPECT_GT(mx, 0.1);
}

// Loss L = Σ R ⊙ logits with fixed random R, so dL/dlogits = R.
double loss(LlamaGrad& g, const LlamaWeightsView& v, const std::vector<int>& ids, const std::vector<float>& r, int V) {
  std::vector<float> z(ids.size() * size_t(V));
  g.forward(v, ids.data(), int(ids.size()), z.data());
  double s = 0;
  for (size_t i = 0; i < z.size(); ++i) s += double(z[i]) * r[i];
  return s;
}

TEST(LlamaGrad, BackwardMatchesFiniteDifferences) {
  for (bool tied : {true, false}) {
    const LlamaConfig c{24, 40, 2, 6, 3, 30, 16};  // head size 4, two query heads per KV head
    LlamaSource src = synthetic_llama(c, 9);
    if (tied) src.tensors.erase("output");
    else if (!src.tensors.count("output")) src.tensors["output"] = src.tensors.at("tok_embeddings").clone();
    // Norm weights away from 1 so their gradients are not special.
    for (auto& [name, t] : src.tensors)
      if (t.ndim() == 1) {
        const auto r = test::random_floats(size_t(t.numel()), 77, 0.3f);
        for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 1.f + r[size_t(i)];
      }
    const std::vector<int> ids = {1, 7, 29, 3, 3, 12, 0, 18, 25, 4, 9};
    const auto r = test::random_floats(ids.size() * 30, 4);
    LlamaGrad g(c, 16);
    LlamaWeightsView v = view_of(src);
    LlamaGradients grads(c, !tied, true);
    std::vector<float> z(ids.size() * 30);
    g.forward(v, ids.data(), int(ids.size()), z.data());
    g.backward(v, r.data(), grads);
    const auto check = [&](const std::string& name, const std::vector<float>& analytic) {
      Tensor& t = src.tensors.at(name);
      ASSERT_EQ(size_t(t.numel()), analytic.size()) << name;
      // Directional derivative along a random ±1 direction, central differences in f32.
      std::mt19937 rng(uint32_t(std::hash<std::string>{}(name)));
      std::vector<float> d(analytic.size());
      double want = 0;
      for (size_t i = 0; i < d.size(); ++i) {
        d[i] = rng() % 2 ? 1.f : -1.f;
        want += double(analytic[i]) * d[i];
      }
      const float eps = 1e-3f;
      float* w = t.data<float>();
      const std::vector<float> w0(w, w + t.numel());
      for (size_t i = 0; i < d.size(); ++i) w[i] = w0[i] + eps * d[i];
      const double lp = loss(g, v, ids, r, 30);
      for (size_t i = 0; i < d.size(); ++i) w[i] = w0[i] - eps * d[i];
      const double lm = loss(g, v, ids, r, 30);
      std::copy(w0.begin(), w0.end(), w);
      const double got = (lp - lm) / (2 * eps);
      EXPECT_NEAR(got, want, 5e-3 * std::max(1.0, std::fabs(want))) << name << (tied ? " (tied)" : "");
    };
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      const auto& G = grads.layers[size_t(l)];
      check(p + "attention_norm", G.att_norm);
      check(p + "ffn_norm", G.ffn_norm);
      check(p + "attention.wq", G.wq);
      check(p + "attention.wk", G.wk);
      check(p + "attention.wv", G.wv);
      check(p + "attention.wo", G.wo);
      check(p + "feed_forward.w1", G.w1);
      check(p + "feed_forward.w2", G.w2);
      check(p + "feed_forward.w3", G.w3);
    }
    check("norm", grads.final_norm);
    check("tok_embeddings", grads.embedding);
    if (!tied) check("output", grads.output);
  }
}

TEST(LlamaGrad, RejectsBadCalls) {
  const LlamaConfig c{24, 40, 1, 6, 3, 30, 16};
  LlamaSource src = synthetic_llama(c, 1);
  LlamaGrad g(c, 8);
  LlamaGradients grads(c, false);
  std::vector<float> z(30 * 9);
  const std::vector<int> ids(9, 1), bad = {1, 30};
  EXPECT_THROW(g.backward(view_of(src), z.data(), grads), Error);              // before any forward
  EXPECT_THROW(g.forward(view_of(src), ids.data(), 9, z.data()), Error);       // longer than max_len
  EXPECT_THROW(g.forward(view_of(src), bad.data(), 2, z.data()), Error);       // token outside the vocabulary
  EXPECT_THROW(LlamaGrad(c, 17), Error);                                       // beyond the model's context
}

}  // namespace
}  // namespace tz
