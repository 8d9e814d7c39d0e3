// The LLaMA forward pass over a KV cache, and llama2.c's sampler.
//
// Attention: K is cached as [layer][pos][kv_dim] and V transposed, [layer][kv_dim][pos], so both
// products of a many-token call are NT GEMMs (scores = Q·Kᵀ, out = P·(Vᵀ)ᵀ) on the shared GEMM
// kernels, and a one-token call reads both as contiguous dot products.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/rope.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/llama.h"
#include "tensorzip/memory.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

void rmsnorm(const float* x, const float* w, int64_t d, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < d; ++i) ss += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
  for (int64_t i = 0; i < d; ++i) out[i] = w[i] * (x[i] * inv);
}

void softmax_inplace(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// Rotates the pairs of each head of `v` (n_heads heads of hs values) by one position's angles:
// adjacent values (2j, 2j+1), or the two halves of the head (j, j + hs/2).
void rope(float* v, int n_heads, int hs, const float* cos, const float* sin, RopeStyle style) {
  const int half = hs / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* p = v + h * hs;
    for (int j = 0; j < half; ++j) {
      const int i0 = style == RopeStyle::Adjacent ? 2 * j : j, i1 = style == RopeStyle::Adjacent ? 2 * j + 1 : j + half;
      const float a = p[i0], b = p[i1];
      p[i0] = a * cos[j] - b * sin[j];
      p[i1] = a * sin[j] + b * cos[j];
    }
  }
}

float gelu_tanh(float x) {  // GELU, tanh approximation (Gemma's gelu_pytorch_tanh)
  return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// Many-token calls use GEMMs for attention from this many tokens (below, per-head dot loops).
constexpr int kAttentionGemmMinTokens = 8;
// Loops over fewer elements than this run on the calling thread (waking the pool costs ~10 µs).
constexpr int64_t kParallelMinElems = 1 << 15;

// fn(row) for row in [0, n), on the pool when the rows hold enough elements to pay for it.
template <class Fn> void for_rows(int64_t n, int64_t elems_per_row, const Fn& fn) {
  if (n * elems_per_row < kParallelMinElems || n == 1) {
    for (int64_t r = 0; r < n; ++r) fn(r);
    return;
  }
  parallel_for(n, [&](int64_t r, int) { fn(r); });
}

}  // namespace

void rope_table(const LlamaConfig& c, int max_seq, std::vector<float>& cos, std::vector<float>& sin, const std::vector<float>& factors) {
  const int half = c.head_size() / 2;
  cos.resize(size_t(max_seq) * size_t(half));
  sin.resize(size_t(max_seq) * size_t(half));
  for (int p = 0; p < max_seq; ++p)
    for (int j = 0; j < half; ++j) {
      const double freq = std::pow(double(c.rope_theta), -2.0 * j / double(c.head_size())) * double(c.rope_freq_scale) /
                          (factors.empty() ? 1.0 : double(factors[size_t(j)]));
      cos[size_t(p * half + j)] = float(std::cos(p * freq));
      sin[size_t(p * half + j)] = float(std::sin(p * freq));
    }
}

LlamaSession::LlamaSession(const LlamaModel& model, int max_seq) : m_(model) {
  const LlamaConfig& c = m_.config();
  max_seq_ = max_seq > 0 ? max_seq : c.seq_len;
  require(max_seq_ > 0, "LlamaSession: max_seq must be positive");
}

// The cache grows with the positions used (at least doubling), so a model whose file declares a
// context of millions of tokens costs memory only for the tokens a run reaches.
void LlamaSession::reserve(KvCache& kv, int positions) {
  const LlamaConfig& c = m_.config();
  if (positions > rope_cap_) {
    const int cap = std::min(max_seq_, std::max({positions, 2 * rope_cap_, kInitialCapacity}));
    rope_table(c, cap, rope_cos_, rope_sin_, m_.rope_factors);
    rope_cap_ = cap;
  }
  if (positions <= kv.cap) return;
  const int cap = std::min(max_seq_, std::max({positions, 2 * kv.cap, kInitialCapacity}));
  const size_t KV = size_t(c.kv_dim()), layers = size_t(c.n_layers);
  const size_t bytes = 2 * size_t(cap) * KV * layers * sizeof(float);
  require_memory(bytes, "the KV cache for " + std::to_string(cap) + " positions");
  std::vector<float> k(size_t(cap) * KV * layers, 0.f), v(size_t(cap) * KV * layers, 0.f);
  for (size_t l = 0; l < layers && kv.cap > 0; ++l) {
    std::memcpy(&k[l * size_t(cap) * KV], &kv.k[l * size_t(kv.cap) * KV], size_t(kv.cap) * KV * 4);
    for (size_t d = 0; d < KV; ++d)  // V is [KV][positions]: each row keeps its prefix
      std::memcpy(&v[(l * KV + d) * size_t(cap)], &kv.v[(l * KV + d) * size_t(kv.cap)], size_t(kv.cap) * 4);
  }
  kv.k = std::move(k);
  kv.v = std::move(v);
  kv.cap = cap;
}

void LlamaSession::ensure_scratch(int n) {
  if (n <= scratch_n_) return;
  const LlamaConfig& c = m_.config();
  const size_t N = size_t(n);
  x_.resize(N * size_t(c.dim));
  xb_.resize(N * size_t(c.dim));
  q_.resize(N * size_t(c.q_dim()));
  att_.resize(N * size_t(c.q_dim()));
  k_.resize(N * size_t(c.kv_dim()));
  v_.resize(N * size_t(c.kv_dim()));
  hb_.resize(N * size_t(c.hidden_dim));
  hb2_.resize(N * size_t(c.hidden_dim));
  scratch_n_ = n;
}

void LlamaSession::forward(const int* tokens, int n, int pos, float* logits, bool all_logits) {
  const LlamaConfig& c = m_.config();
  require(n > 0, "forward: no tokens");
  require(pos >= 0 && int64_t(pos) + n <= max_seq_,
          "forward: positions " + std::to_string(pos) + ".." + std::to_string(pos + n - 1) + " exceed the context of " +
              std::to_string(max_seq_) + " tokens");
  reserve(own_, pos + n);
  for (int t = 0; t < n; ++t)
    require(tokens[t] >= 0 && tokens[t] < c.vocab_size,
            "forward: token id " + std::to_string(tokens[t]) + " outside the vocabulary (" + std::to_string(c.vocab_size) + ")");
  ensure_scratch(n);
  const int64_t D = c.dim;
  for (int t = 0; t < n; ++t) m_.embed(tokens[t], &x_[size_t(t * D)]);
  if (c.embed_scale != 1.f)
    for (int64_t i = 0; i < int64_t(n) * D; ++i) x_[size_t(i)] *= c.embed_scale;

  const std::vector<Segment> segs = {{&own_, pos, 0, n}};
  for (int l = 0; l < c.n_layers; ++l) layer(l, segs, n);
  const int first = all_logits ? 0 : n - 1;
  for (int t = first; t < n; ++t) rmsnorm(&x_[size_t(t * D)], m_.final_norm.data(), D, c.norm_eps, &xb_[size_t(t * D)]);
  if (hook_) hook_("output", &xb_[size_t(first * D)], n - first, D);
  m_.classifier.forward(&xb_[size_t(first * D)], n - first, logits);
  if (c.final_softcap > 0.f)
    for (int64_t i = 0; i < int64_t(n - first) * c.vocab_size; ++i) logits[i] = c.final_softcap * std::tanh(logits[i] / c.final_softcap);
}

void LlamaSession::forward_batch(const std::vector<BatchEntry>& batch, const LlamaAdapterSet* adapters) {
  const LlamaConfig& c = m_.config();
  require(!batch.empty(), "forward_batch: no sequences");
  std::vector<Segment> segs;
  int rows = 0;
  for (const auto& e : batch) {
    require(e.cache != nullptr && e.tokens != nullptr && e.logits != nullptr && e.n > 0, "forward_batch: an entry without a cache, tokens or logits");
    require(e.pos >= 0 && int64_t(e.pos) + e.n <= max_seq_, "forward_batch: positions " + std::to_string(e.pos) + ".." +
                                                                std::to_string(e.pos + e.n - 1) + " exceed the context of " +
                                                                std::to_string(max_seq_) + " tokens");
    require(e.adapter < 0 || (adapters != nullptr && adapters->live(e.adapter)), "forward_batch: adapter " + std::to_string(e.adapter) + " is not loaded");
    for (const auto& s : segs) require(s.kv != e.cache, "forward_batch: one cache in two entries");
    for (int t = 0; t < e.n; ++t)
      require(e.tokens[t] >= 0 && e.tokens[t] < c.vocab_size,
              "forward_batch: token id " + std::to_string(e.tokens[t]) + " outside the vocabulary (" + std::to_string(c.vocab_size) + ")");
    segs.push_back({e.cache, e.pos, rows, e.n});
    rows += e.n;
  }
  for (const auto& e : batch) reserve(*e.cache, e.pos + e.n);
  ensure_scratch(rows);
  const int64_t D = c.dim;
  row_adapter_.assign(size_t(rows), -1);
  for (size_t i = 0; i < batch.size(); ++i) {
    for (int t = 0; t < batch[i].n; ++t) {
      m_.embed(batch[i].tokens[t], &x_[size_t((segs[i].row0 + t) * D)]);
      row_adapter_[size_t(segs[i].row0 + t)] = batch[i].adapter;
    }
  }
  if (c.embed_scale != 1.f)
    for (int64_t i = 0; i < int64_t(rows) * D; ++i) x_[size_t(i)] *= c.embed_scale;
  adapters_ = adapters;
  struct Reset {  // the adapters belong to this call only, whatever happens
    const LlamaAdapterSet*& a;
    ~Reset() { a = nullptr; }
  } reset{adapters_};
  for (int l = 0; l < c.n_layers; ++l) layer(l, segs, rows);
  // Each entry's last row, normed, gathered for one classifier call.
  const int m = int(batch.size());
  std::vector<int32_t> last_ids(static_cast<size_t>(m));
  for (int i = 0; i < m; ++i) {
    const int r = segs[size_t(i)].row0 + segs[size_t(i)].n - 1;
    rmsnorm(&x_[size_t(r * D)], m_.final_norm.data(), D, c.norm_eps, &xb_[size_t(i * D)]);
    last_ids[size_t(i)] = batch[size_t(i)].adapter;
  }
  const int64_t V = c.vocab_size;
  std::vector<float> logits(size_t(m) * size_t(V));
  m_.classifier.forward(xb_.data(), m, logits.data());
  if (adapters) adapters->apply(-1, 0, xb_.data(), m, last_ids.data(), logits.data());
  for (int i = 0; i < m; ++i) {
    float* out = batch[size_t(i)].logits;
    std::copy_n(&logits[size_t(i) * size_t(V)], V, out);
    if (c.final_softcap > 0.f)
      for (int64_t j = 0; j < V; ++j) out[j] = c.final_softcap * std::tanh(out[j] / c.final_softcap);
  }
}

void LlamaSession::run_layer(int l, float* x, int n, int pos) {
  const LlamaConfig& c = m_.config();
  require(l >= 0 && l < c.n_layers, "run_layer: layer " + std::to_string(l) + " out of range");
  require(n > 0 && pos >= 0 && int64_t(pos) + n <= max_seq_, "run_layer: positions exceed the context");
  reserve(own_, pos + n);
  ensure_scratch(n);
  std::memcpy(x_.data(), x, size_t(n) * size_t(c.dim) * 4);
  layer(l, {{&own_, pos, 0, n}}, n);
  std::memcpy(x, x_.data(), size_t(n) * size_t(c.dim) * 4);
}

void LlamaSession::head_input(const float* x, int n, float* out) const {
  const LlamaConfig& c = m_.config();
  for (int t = 0; t < n; ++t) rmsnorm(x + int64_t(t) * c.dim, m_.final_norm.data(), c.dim, c.norm_eps, out + int64_t(t) * c.dim);
}

void LlamaSession::layer(int l, const std::vector<Segment>& segs, int n) {
  const LlamaConfig& c = m_.config();
  const int64_t D = c.dim, Q = c.q_dim(), KV = c.kv_dim(), H = c.hidden_dim, hs = c.head_size(), half = hs / 2;
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = c.attn_scale > 0.f ? c.attn_scale : 1.f / std::sqrt(float(hs));
  const float softcap = c.attn_softcap;
  // Keys a query at position q sees: [q − window + 1, q] on sliding layers, else [0, q].
  const bool sliding = c.sliding_window > 0 && (!c.sliding_even_layers || l % 2 == 0);
  const auto first_key = [&](int64_t q) { return sliding ? std::max<int64_t>(0, q - c.sliding_window + 1) : 0; };
  // Linear `which` (0..6: wq wk wv wo w1 w2 w3) over all n rows, then each row's adapter.
  const auto linear = [&](const Linear& w, int which, const std::string& name, const float* in, float* out) {
    if (hook_) hook_(name, in, n, w.in());
    w.forward(in, n, out);
    if (adapters_) adapters_->apply(l, which, in, n, row_adapter_.data(), out);
  };
  // x_ rows through an RMSNorm with weight w into out (a copy when there is no norm).
  const auto norm_rows = [&](const std::vector<float>& w, const float* in, float* out) {
    for_rows(n, D, [&](int64_t t) {
      if (w.empty()) std::memcpy(out + t * D, in + t * D, size_t(D) * 4);
      else rmsnorm(in + t * D, w.data(), D, c.norm_eps, out + t * D);
    });
  };
  // y += post_norm(delta) (post_norms), else y += delta; row by row.
  const auto residual = [&](const std::vector<float>& post_norm, float* delta) {
    for_rows(n, D, [&](int64_t t) {
      float* d = delta + t * D;
      if (!post_norm.empty()) rmsnorm(d, post_norm.data(), D, c.norm_eps, d);
      for (int64_t i = 0; i < D; ++i) x_[size_t(t * D + i)] += d[i];
    });
  };
  {
    const LlamaModel::Layer& L = m_.layers[size_t(l)];
    const std::string p = hook_ ? "layers." + std::to_string(l) + "." : std::string();
    norm_rows(L.att_norm, x_.data(), xb_.data());
    linear(L.wq, 0, p + "attention.wq", xb_.data(), q_.data());
    linear(L.wk, 1, p + "attention.wk", xb_.data(), k_.data());
    linear(L.wv, 2, p + "attention.wv", xb_.data(), v_.data());
    for (int t = 0; t < n; ++t) {
      float* qt = &q_[size_t(t * Q)];
      float* kt = &k_[size_t(t * KV)];
      float* vt = &v_[size_t(t * KV)];
      if (!L.bq.empty()) {
        for (int64_t i = 0; i < Q; ++i) qt[i] += L.bq[size_t(i)];
        for (int64_t i = 0; i < KV; ++i) kt[i] += L.bk[size_t(i)], vt[i] += L.bv[size_t(i)];
      }
      if (!L.q_norm.empty()) {  // per head, one weight for all heads (qwen3), or over the whole projection (olmo2)
        const int64_t qn = c.qk_norm_per_head ? hs : Q, kn = c.qk_norm_per_head ? hs : KV;
        for (int64_t i = 0; i < Q; i += qn) rmsnorm(qt + i, L.q_norm.data(), qn, c.norm_eps, qt + i);
        for (int64_t i = 0; i < KV; i += kn) rmsnorm(kt + i, L.k_norm.data(), kn, c.norm_eps, kt + i);
      }
    }
    // Attention, sequence by sequence: its rows' queries against its own cache.
    for (const Segment& sg : segs) {
      const int pos = sg.pos, sn = sg.n;
      float* q_s = &q_[size_t(sg.row0) * size_t(Q)];
      float* k_s = &k_[size_t(sg.row0) * size_t(KV)];
      float* v_s = &v_[size_t(sg.row0) * size_t(KV)];
      float* att_s = &att_[size_t(sg.row0) * size_t(Q)];
      const int64_t cap = sg.kv->cap;  // positions allocated: the row stride of V
      float* kc = &sg.kv->k[size_t(l) * size_t(cap) * size_t(KV)];
      float* vc = &sg.kv->v[size_t(l) * size_t(cap) * size_t(KV)];  // transposed: [KV][cap]
      for_rows(sn, Q + KV, [&](int64_t t) {
        const float* cs = &rope_cos_[size_t((pos + t) * half)];
        const float* sn_ = &rope_sin_[size_t((pos + t) * half)];
        rope(&q_s[size_t(t * Q)], c.n_heads, int(hs), cs, sn_, c.rope_style);
        rope(&k_s[size_t(t * KV)], c.n_kv_heads, int(hs), cs, sn_, c.rope_style);
        std::memcpy(kc + int64_t(pos + t) * KV, &k_s[size_t(t * KV)], size_t(KV) * 4);
      });
      // V transposed into the cache: by rows of the cache (each task its own cache lines).
      for_rows(KV, sn, [&](int64_t d) {
        for (int64_t t = 0; t < sn; ++t) vc[d * cap + pos + t] = v_s[size_t(t * KV + d)];
      });
      // Scaled (and soft-capped) scores of keys [lo, visible) in place, softmax over them, zero elsewhere.
      const auto attend = [&](float* s, int64_t lo, int64_t visible, int64_t len) {
        for (int64_t j = lo; j < visible; ++j) {
          s[j] *= scale;
          if (softcap > 0.f) s[j] = softcap * std::tanh(s[j] / softcap);
        }
        softmax_inplace(s + lo, visible - lo);
        std::fill(s, s + lo, 0.f);
        std::fill(s + visible, s + len, 0.f);
      };
      const int64_t T = pos + sn;  // keys visible to the last token
      if (sn >= kAttentionGemmMinTokens) {
        // One head per task, its two products on our own kernels inline (gemm_f32_in_task): as one
        // OpenBLAS call per product with softmax passes between them, OpenBLAS's OpenMP team and our
        // pool spun against each other and two threads took twice one thread's time (33 → 69 ms per
        // 256-token prefill of two 7B layers).
        parallel_for(c.n_heads, [&](int64_t h, int) {
          thread_local std::vector<float> scores;
          if (scores.size() < size_t(sn) * size_t(T)) scores.resize(size_t(sn) * size_t(T));
          const int64_t kvo = int64_t(h / group) * hs;
          gemm_f32_in_task(sn, T, hs, &q_s[size_t(h * hs)], Q, kc + kvo, KV, scores.data(), T);
          for (int64_t t = 0; t < sn; ++t) attend(&scores[size_t(t * T)], first_key(pos + t), pos + t + 1, T);
          gemm_f32_in_task(sn, hs, T, scores.data(), T, vc + kvo * cap, cap, &att_s[size_t(h * hs)], Q);
        });
      } else {
        const auto head = [&](int64_t task, int) {
          thread_local std::vector<float> s;
          const int64_t t = task / c.n_heads, h = task % c.n_heads, visible = pos + t + 1, lo = first_key(pos + t);
          if (s.size() < size_t(visible)) s.resize(size_t(visible));
          const float* qv = &q_s[size_t(t * Q + h * hs)];
          const int64_t kvo = (h / group) * hs;
          for (int64_t j = lo; j < visible; ++j) {
            const float* kv = kc + j * KV + kvo;
            float dot = 0;
            for (int64_t i = 0; i < hs; ++i) dot += qv[i] * kv[i];
            s[size_t(j)] = dot;
          }
          attend(s.data(), lo, visible, visible);
          float* out = &att_s[size_t(t * Q + h * hs)];
          for (int64_t i = 0; i < hs; ++i) {
            const float* vrow = vc + (kvo + i) * cap;
            float acc = 0;
            for (int64_t j = lo; j < visible; ++j) acc += s[size_t(j)] * vrow[j];
            out[i] = acc;
          }
        };
        if (int64_t(sn) * c.n_heads * T * hs >= kParallelMinElems) parallel_for(int64_t(sn) * c.n_heads, head);
        else for (int64_t task = 0; task < int64_t(sn) * c.n_heads; ++task) head(task, 0);
      }
    }
    linear(L.wo, 3, p + "attention.wo", att_.data(), xb_.data());
    residual(L.post_att_norm, xb_.data());
    norm_rows(L.ffn_norm, x_.data(), xb_.data());
    linear(L.w1, 4, p + "feed_forward.w1", xb_.data(), hb_.data());
    linear(L.w3, 6, p + "feed_forward.w3", xb_.data(), hb2_.data());
    const bool gelu = c.ffn_act == FfnActivation::GeluTanh;
    for_rows(n, H * 8, [&](int64_t t) {  // SwiGLU / GeGLU; exp or tanh costs ~8 element-ops
      for (int64_t i = t * H; i < (t + 1) * H; ++i) {
        const float a = hb_[size_t(i)];
        hb_[size_t(i)] = (gelu ? gelu_tanh(a) : a / (1.f + std::exp(-a))) * hb2_[size_t(i)];
      }
    });
    linear(L.w2, 5, p + "feed_forward.w2", hb_.data(), xb_.data());
    residual(L.post_ffn_norm, xb_.data());
  }
}

// ------------------------------------------------------------------ sampler

Sampler::Sampler(int vocab, float temperature, float top_p, uint64_t seed)
    : vocab_(vocab), temp_(temperature), top_p_(top_p), state_(seed) {
  require(temperature >= 0.f && std::isfinite(temperature), "sampler: temperature must be finite and >= 0");
  require(top_p >= 0.f && top_p <= 1.f, "sampler: top-p must be in [0, 1]");
}

void Sampler::set_top_k(int k) {
  require(k >= 0, "sampler: top-k must be >= 0");
  top_k_ = k;
}

void Sampler::set_min_p(float p) {
  require(p >= 0.f && p <= 1.f, "sampler: min-p must be in [0, 1]");
  min_p_ = p;
}

float Sampler::random_f32() {  // llama2.c's xorshift*
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const uint32_t r = uint32_t((state_ * 0x2545F4914F6CDD1Dull) >> 32);
  return float(r >> 8) / 16777216.0f;
}

int Sampler::sample(float* logits) {
  // A NaN or Inf logit has no probability; it comes from a broken model, so it is named, not drawn.
  for (int i = 0; i < vocab_; ++i)
    if (!std::isfinite(logits[i]))
      throw Error("sampler: the logit of token " + std::to_string(i) + " is " + std::to_string(logits[i]) +
                  " (the model produced a non-finite value)");
  const int best = int(std::max_element(logits, logits + vocab_) - logits);
  if (temp_ == 0.f) return best;
  // softmax((l - max) / T): the largest logit maps to exp(0) = 1, so a tiny T tends to greedy
  // instead of l / T overflowing to Inf and the softmax to NaN.
  const float mx = logits[best];
  float sum = 0;
  for (int i = 0; i < vocab_; ++i) {
    logits[i] = std::exp((logits[i] - mx) / temp_);
    sum += logits[i];
  }
  for (int i = 0; i < vocab_; ++i) logits[i] /= sum;
  const float coin = random_f32();
  if (top_k_ > 0 || min_p_ > 0.f) {  // llama.cpp's chain: top-k, min-p, then top-p, renormalised
    probindex_.clear();
    for (int i = 0; i < vocab_; ++i) probindex_.emplace_back(logits[i], i);
    const size_t k = top_k_ > 0 ? std::min(size_t(top_k_), probindex_.size()) : probindex_.size();
    std::partial_sort(probindex_.begin(), probindex_.begin() + ptrdiff_t(k), probindex_.end(),
                      [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    probindex_.resize(k);
    const float floor = min_p_ * probindex_[0].first;
    size_t keep = 1;
    while (keep < probindex_.size() && probindex_[keep].first >= floor) ++keep;
    probindex_.resize(keep);
    float total = 0;
    for (const auto& pi : probindex_) total += pi.first;
    size_t last = probindex_.size() - 1;
    if (top_p_ > 0.f && top_p_ < 1.f) {
      float cum = 0;
      for (size_t i = 0; i < probindex_.size(); ++i)
        if ((cum += probindex_[i].first / total) >= top_p_) {
          last = i;
          break;
        }
    }
    float mass = 0;
    for (size_t i = 0; i <= last; ++i) mass += probindex_[i].first;
    const float r = coin * mass;
    float cdf = 0;
    for (size_t i = 0; i <= last; ++i)
      if (r < (cdf += probindex_[i].first)) return probindex_[i].second;
    return probindex_[last].second;
  }
  if (top_p_ <= 0.f || top_p_ >= 1.f) {
    float cdf = 0;
    for (int i = 0; i < vocab_; ++i) {
      cdf += logits[i];
      if (coin < cdf) return i;
    }
    return vocab_ - 1;
  }
  // Nucleus: candidates above (1 - p) / (n - 1) cannot be excluded, sort only those.
  probindex_.clear();
  const float cutoff = vocab_ > 1 ? (1.f - top_p_) / float(vocab_ - 1) : 0.f;
  for (int i = 0; i < vocab_; ++i)
    if (logits[i] >= cutoff) probindex_.emplace_back(logits[i], i);
  if (probindex_.empty()) probindex_.emplace_back(logits[best], best);  // a flat distribution under a tiny p
  std::sort(probindex_.begin(), probindex_.end(), [](auto& a, auto& b) { return a.first > b.first; });
  float cum = 0;
  size_t last = probindex_.size() - 1;
  for (size_t i = 0; i < probindex_.size(); ++i) {
    cum += probindex_[i].first;
    if (cum > top_p_) {
      last = i;
      break;
    }
  }
  const float r = coin * cum;
  float cdf = 0;
  for (size_t i = 0; i <= last; ++i) {
    cdf += probindex_[i].first;
    if (r < cdf) return probindex_[i].second;
  }
  return probindex_[last].second;
}

}  // namespace tz
