// LlamaGrad: the whole-sequence f32 forward pass with its activations kept, and the backward pass.
// Shapes per sequence of n tokens: x [n, dim]; q [n, dim]; k, v [n, kv_dim]; attention
// probabilities p [head][n][n] (causal: zero above the diagonal); FFN a, b, h [n, hidden].
#include "tensorzip/llama_grad.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowrank/lapack.h"
#include "model/rope.h"
#include "tensorzip/error.h"

namespace tz {
namespace {

using lowrank::gemm;

// out = g ⊙ x · r with r = 1 / sqrt(mean(x²) + eps), per row; r kept for backward.
void rmsnorm_rows(const float* x, const float* g, int n, int64_t d, float eps, float* r, float* out) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
    r[t] = inv;
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = g[i] * (xr[i] * inv);
  }
}

// dx += ∂(g ⊙ x·r)/∂x applied to dy; dg += Σ_t dy ⊙ x·r.
void rmsnorm_rows_backward(const float* x, const float* g, const float* r, const float* dy, int n, int64_t d, float* dx,
                           float* dg) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* dyr = dy + t * d;
    double s = 0;
    for (int64_t i = 0; i < d; ++i) {
      dg[i] += dyr[i] * xr[i] * r[t];
      s += double(g[i]) * dyr[i] * xr[i];
    }
    const float c = float(s * double(r[t]) * r[t] * r[t] / double(d));
    for (int64_t i = 0; i < d; ++i) dx[t * d + i] += r[t] * g[i] * dyr[i] - c * xr[i];
  }
}

// Rotates (inverse: by −angle) adjacent pairs of each of `heads` heads, row t at position t.
void rope_rows(float* v, int n, int64_t ld, int heads, int hs, const float* cos, const float* sin, bool inverse) {
  const int half = hs / 2;
  for (int t = 0; t < n; ++t)
    for (int h = 0; h < heads; ++h) {
      float* p = v + t * ld + h * hs;
      const float* cs = cos + t * half;
      const float* sn = sin + t * half;
      for (int j = 0; j < half; ++j) {
        const float a = p[2 * j], b = p[2 * j + 1];
        const float s = inverse ? -sn[j] : sn[j];
        p[2 * j] = a * cs[j] - b * s;
        p[2 * j + 1] = a * s + b * cs[j];
      }
    }
}

void add_to(std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}

}  // namespace

LlamaGradients::LlamaGradients(const LlamaConfig& c, bool with_output, bool with_embedding) {
  const size_t D = size_t(c.dim), KV = size_t(c.kv_dim()), H = size_t(c.hidden_dim);
  layers.resize(size_t(c.n_layers));
  for (auto& L : layers) {
    L.att_norm.assign(D, 0.f);
    L.ffn_norm.assign(D, 0.f);
    L.wq.assign(D * D, 0.f);
    L.wk.assign(KV * D, 0.f);
    L.wv.assign(KV * D, 0.f);
    L.wo.assign(D * D, 0.f);
    L.w1.assign(H * D, 0.f);
    L.w2.assign(D * H, 0.f);
    L.w3.assign(H * D, 0.f);
  }
  final_norm.assign(D, 0.f);
  if (with_output) output.assign(size_t(c.vocab_size) * D, 0.f);
  if (with_embedding) embedding.assign(size_t(c.vocab_size) * D, 0.f);
}

void LlamaGradients::zero() {
  for (auto& L : layers)
    for (auto* v : Layer::fields(L)) std::fill(v->begin(), v->end(), 0.f);
  std::fill(final_norm.begin(), final_norm.end(), 0.f);
  std::fill(output.begin(), output.end(), 0.f);
  std::fill(embedding.begin(), embedding.end(), 0.f);
}

void LlamaGradients::add(const LlamaGradients& o) {
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto a = Layer::fields(layers[l]);
    const auto b = Layer::fields(o.layers[l]);
    for (size_t i = 0; i < a.size(); ++i) add_to(*a[i], *b[i]);
  }
  add_to(final_norm, o.final_norm);
  add_to(output, o.output);
  add_to(embedding, o.embedding);
}

LlamaGrad::LlamaGrad(const LlamaConfig& c, int max_len) : c_(c), max_len_(max_len) {
  c.validate("LlamaGrad");
  require(c.plain_llama(), "tuning runs the LLaMA architecture only (this model is " + c.arch +
                               " or has architecture switches the backward pass does not implement)");
  require(max_len > 0 && max_len <= c.seq_len, "LlamaGrad: sequence length must be in 1.." + std::to_string(c.seq_len));
  rope_table(c, max_len, cos_, sin_);
  acts_.resize(size_t(c.n_layers));
}

void LlamaGrad::forward(const LlamaWeightsView& w, const int* tokens, int n, float* logits) {
  require(n > 0 && n <= max_len_, "LlamaGrad: " + std::to_string(n) + " tokens (1.." + std::to_string(max_len_) + " allowed)");
  require(w.layers.size() == size_t(c_.n_layers), "LlamaGrad: weights for a different number of layers");
  const int64_t D = c_.dim, KV = c_.kv_dim(), H = c_.hidden_dim, hs = c_.head_size(), V = c_.vocab_size;
  const int nh = c_.n_heads, group = c_.n_heads / c_.n_kv_heads;
  const float scale = 1.f / std::sqrt(float(hs));
  n_ = n;
  tokens_.assign(tokens, tokens + n);
  const size_t N = size_t(n);
  std::vector<float> x(N * size_t(D));
  for (int t = 0; t < n; ++t) {
    require(tokens[t] >= 0 && tokens[t] < V, "LlamaGrad: token id " + std::to_string(tokens[t]) + " outside the vocabulary");
    std::memcpy(&x[size_t(t * D)], w.embedding + int64_t(tokens[t]) * D, size_t(D) * 4);
  }
  for (int l = 0; l < c_.n_layers; ++l) {
    const auto& W = w.layers[size_t(l)];
    LayerActs& A = acts_[size_t(l)];
    A.x = x;
    A.r1.resize(N);
    A.xn.resize(N * size_t(D));
    rmsnorm_rows(x.data(), W.att_norm, n, D, c_.norm_eps, A.r1.data(), A.xn.data());
    A.q.resize(N * size_t(D));
    A.k.resize(N * size_t(KV));
    A.v.resize(N * size_t(KV));
    gemm(false, true, n, D, D, 1.f, A.xn.data(), D, W.wq, D, 0.f, A.q.data(), D);
    gemm(false, true, n, KV, D, 1.f, A.xn.data(), D, W.wk, D, 0.f, A.k.data(), KV);
    gemm(false, true, n, KV, D, 1.f, A.xn.data(), D, W.wv, D, 0.f, A.v.data(), KV);
    rope_rows(A.q.data(), n, D, nh, int(hs), cos_.data(), sin_.data(), false);
    rope_rows(A.k.data(), n, KV, c_.n_kv_heads, int(hs), cos_.data(), sin_.data(), false);
    A.p.resize(size_t(nh) * N * N);
    A.att.resize(N * size_t(D));
    for (int h = 0; h < nh; ++h) {
      const int64_t kvo = int64_t(h / group) * hs;
      float* P = &A.p[size_t(h) * N * N];
      gemm(false, true, n, n, hs, 1.f, &A.q[size_t(h * hs)], D, &A.k[size_t(kvo)], KV, 0.f, P, n);
      for (int t = 0; t < n; ++t) {
        float* s = P + int64_t(t) * n;
        float mx = -INFINITY;
        for (int j = 0; j <= t; ++j) mx = std::max(mx, s[j] *= scale);
        float sum = 0;
        for (int j = 0; j <= t; ++j) sum += (s[j] = std::exp(s[j] - mx));
        const float inv = 1.f / sum;
        for (int j = 0; j <= t; ++j) s[j] *= inv;
        std::fill(s + t + 1, s + n, 0.f);
      }
      gemm(false, false, n, hs, n, 1.f, P, n, &A.v[size_t(kvo)], KV, 0.f, &A.att[size_t(h * hs)], D);
    }
    A.x2 = x;
    gemm(false, true, n, D, D, 1.f, A.att.data(), D, W.wo, D, 1.f, A.x2.data(), D);
    A.r2.resize(N);
    A.xn2.resize(N * size_t(D));
    rmsnorm_rows(A.x2.data(), W.ffn_norm, n, D, c_.norm_eps, A.r2.data(), A.xn2.data());
    A.a.resize(N * size_t(H));
    A.b.resize(N * size_t(H));
    A.h.resize(N * size_t(H));
    gemm(false, true, n, H, D, 1.f, A.xn2.data(), D, W.w1, D, 0.f, A.a.data(), H);
    gemm(false, true, n, H, D, 1.f, A.xn2.data(), D, W.w3, D, 0.f, A.b.data(), H);
    for (size_t i = 0; i < N * size_t(H); ++i) A.h[i] = A.a[i] / (1.f + std::exp(-A.a[i])) * A.b[i];
    x = A.x2;
    gemm(false, true, n, D, H, 1.f, A.h.data(), H, W.w2, H, 1.f, x.data(), D);
  }
  xl_ = x;
  rf_.resize(N);
  xf_.resize(N * size_t(D));
  rmsnorm_rows(xl_.data(), w.final_norm, n, D, c_.norm_eps, rf_.data(), xf_.data());
  gemm(false, true, n, V, D, 1.f, xf_.data(), D, w.output, D, 0.f, logits, V);
}

void LlamaGrad::backward(const LlamaWeightsView& w, const float* dlogits, LlamaGradients& g) {
  require(n_ > 0, "LlamaGrad: backward before forward");
  const int n = n_;
  const int64_t D = c_.dim, KV = c_.kv_dim(), H = c_.hidden_dim, hs = c_.head_size(), V = c_.vocab_size;
  const int nh = c_.n_heads, group = c_.n_heads / c_.n_kv_heads;
  const float scale = 1.f / std::sqrt(float(hs));
  const size_t N = size_t(n);
  std::vector<float> dxf(N * size_t(D));
  gemm(false, false, n, D, V, 1.f, dlogits, V, w.output, D, 0.f, dxf.data(), D);
  const bool tied = w.output == w.embedding;
  std::vector<float>& dclass = tied ? g.embedding : g.output;
  if (!dclass.empty()) gemm(true, false, V, D, n, 1.f, dlogits, V, xf_.data(), D, 1.f, dclass.data(), D);
  dx_.assign(N * size_t(D), 0.f);
  rmsnorm_rows_backward(xl_.data(), w.final_norm, rf_.data(), dxf.data(), n, D, dx_.data(), g.final_norm.data());
  dxn_.resize(N * size_t(D));
  dh_.resize(N * size_t(H));
  da_.resize(N * size_t(H));
  db_.resize(N * size_t(H));
  datt_.resize(N * size_t(D));
  dq_.resize(N * size_t(D));
  dk_.resize(N * size_t(KV));
  dv_.resize(N * size_t(KV));
  dp_.resize(N * N);
  for (int l = c_.n_layers - 1; l >= 0; --l) {
    const auto& W = w.layers[size_t(l)];
    const LayerActs& A = acts_[size_t(l)];
    auto& G = g.layers[size_t(l)];
    // FFN: x3 = x2 + (silu(a) ⊙ b)·W2ᵀ, a = xn2·W1ᵀ, b = xn2·W3ᵀ. dx_ holds dL/dx3.
    gemm(false, false, n, H, D, 1.f, dx_.data(), D, W.w2, H, 0.f, dh_.data(), H);
    gemm(true, false, D, H, n, 1.f, dx_.data(), D, A.h.data(), H, 1.f, G.w2.data(), H);
    for (size_t i = 0; i < N * size_t(H); ++i) {
      const float a = A.a[i], sig = 1.f / (1.f + std::exp(-a));
      db_[i] = dh_[i] * a * sig;
      da_[i] = dh_[i] * A.b[i] * sig * (1.f + a * (1.f - sig));
    }
    gemm(false, false, n, D, H, 1.f, da_.data(), H, W.w1, D, 0.f, dxn_.data(), D);
    gemm(false, false, n, D, H, 1.f, db_.data(), H, W.w3, D, 1.f, dxn_.data(), D);
    gemm(true, false, H, D, n, 1.f, da_.data(), H, A.xn2.data(), D, 1.f, G.w1.data(), D);
    gemm(true, false, H, D, n, 1.f, db_.data(), H, A.xn2.data(), D, 1.f, G.w3.data(), D);
    rmsnorm_rows_backward(A.x2.data(), W.ffn_norm, A.r2.data(), dxn_.data(), n, D, dx_.data(), G.ffn_norm.data());
    // Attention: x2 = x + att·Woᵀ. dx_ now holds dL/dx2.
    gemm(false, false, n, D, D, 1.f, dx_.data(), D, W.wo, D, 0.f, datt_.data(), D);
    gemm(true, false, D, D, n, 1.f, dx_.data(), D, A.att.data(), D, 1.f, G.wo.data(), D);
    std::fill(dk_.begin(), dk_.end(), 0.f);
    std::fill(dv_.begin(), dv_.end(), 0.f);
    for (int h = 0; h < nh; ++h) {
      const int64_t kvo = int64_t(h / group) * hs;
      const float* P = &A.p[size_t(h) * N * N];
      float* dP = dp_.data();
      gemm(false, true, n, n, hs, 1.f, &datt_[size_t(h * hs)], D, &A.v[size_t(kvo)], KV, 0.f, dP, n);
      gemm(true, false, n, hs, n, 1.f, P, n, &datt_[size_t(h * hs)], D, 1.f, &dv_[size_t(kvo)], KV);
      for (int t = 0; t < n; ++t) {  // softmax backward, then the 1/sqrt(hs) of the scores
        const float* pr = P + int64_t(t) * n;
        float* dr = dP + int64_t(t) * n;
        double dot = 0;
        for (int j = 0; j <= t; ++j) dot += double(pr[j]) * dr[j];
        for (int j = 0; j <= t; ++j) dr[j] = pr[j] * (dr[j] - float(dot)) * scale;
        std::fill(dr + t + 1, dr + n, 0.f);
      }
      gemm(false, false, n, hs, n, 1.f, dP, n, &A.k[size_t(kvo)], KV, 0.f, &dq_[size_t(h * hs)], D);
      gemm(true, false, n, hs, n, 1.f, dP, n, &A.q[size_t(h * hs)], D, 1.f, &dk_[size_t(kvo)], KV);
    }
    rope_rows(dq_.data(), n, D, nh, int(hs), cos_.data(), sin_.data(), true);
    rope_rows(dk_.data(), n, KV, c_.n_kv_heads, int(hs), cos_.data(), sin_.data(), true);
    gemm(false, false, n, D, D, 1.f, dq_.data(), D, W.wq, D, 0.f, dxn_.data(), D);
    gemm(false, false, n, D, KV, 1.f, dk_.data(), KV, W.wk, D, 1.f, dxn_.data(), D);
    gemm(false, false, n, D, KV, 1.f, dv_.data(), KV, W.wv, D, 1.f, dxn_.data(), D);
    gemm(true, false, D, D, n, 1.f, dq_.data(), D, A.xn.data(), D, 1.f, G.wq.data(), D);
    gemm(true, false, KV, D, n, 1.f, dk_.data(), KV, A.xn.data(), D, 1.f, G.wk.data(), D);
    gemm(true, false, KV, D, n, 1.f, dv_.data(), KV, A.xn.data(), D, 1.f, G.wv.data(), D);
    rmsnorm_rows_backward(A.x.data(), W.att_norm, A.r1.data(), dxn_.data(), n, D, dx_.data(), G.att_norm.data());
  }
  if (!g.embedding.empty())
    for (int t = 0; t < n; ++t)
      for (int64_t i = 0; i < D; ++i) g.embedding[size_t(tokens_[size_t(t)] * D + i)] += dx_[size_t(t * D + i)];
}

}  // namespace tz
