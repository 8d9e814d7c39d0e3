// tune_quantized: end-to-end distillation of a compressed model into its original (compress.h).
//
// A compressed layer stands for W = s ⊙ U + F: s its group scales (per row and group), U the codes
// at scale 1 (q − zero, or the symmetric / ternary level) divided by the AWQ input scale where one
// is stored, F what else it carries (outlier columns, the low-rank branch; fixed). With s = exp(θ),
// ∂L/∂θ_g = s_g · Σ_{i ∈ g} (∂L/∂W)_i · U_i. Codes, when tuned, are round(code₀ + δ) clamped to the
// grid, with the straight-through gradient ∂L/∂δ_i = (∂L/∂W)_i · s_g / (input scale). Zero points,
// format and size stay as they are. Memory: a few f32 copies of every weight and one sequence's
// activations per thread — made for small models (stories260K-sized), not for 7B ones.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iterator>
#include <map>
#include <numeric>
#include <random>

#include "lowrank/lapack.h"
#include "quant/linear_names.h"
#include "tensorzip/compress.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/llama_grad.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

using Clock = std::chrono::steady_clock;

// The view's / gradients' slot of a canonical linear name.
struct Slot {
  int layer = -1;  // -1: output
  int which = 0;   // index in kLinears
};
Slot slot_of(const std::string& name, int n_layers) {
  if (name == "output") return {};
  for (int l = 0; l < n_layers; ++l)
    for (int w = 0; w < int(std::size(kLinears)); ++w)
      if (name == "layers." + std::to_string(l) + "." + kLinears[w]) return {l, w};
  throw Error("tune: no linear layer named '" + name + "'");
}
const float*& view_ptr(LlamaWeightsView& v, const Slot& s) {
  if (s.layer < 0) return v.output;
  auto& L = v.layers[size_t(s.layer)];
  const float** p[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3};
  return *p[s.which];
}
std::vector<float>& grad_of(LlamaGradients& g, const Slot& s) {
  if (s.layer < 0) return g.output;
  auto& L = g.layers[size_t(s.layer)];
  std::vector<float>* p[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3};
  return *p[s.which];
}

// Adam with bias correction on a flat parameter vector.
struct Adam {
  std::vector<float> m, v;
  explicit Adam(size_t n = 0) : m(n, 0.f), v(n, 0.f) {}
  void step(float* p, const float* g, size_t n, double lr, int t) {
    const double b1 = 0.9, b2 = 0.999, c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
    for (size_t i = 0; i < n; ++i) {
      m[i] = float(b1 * m[i] + (1 - b1) * g[i]);
      v[i] = float(b2 * v[i] + (1 - b2) * double(g[i]) * g[i]);
      p[i] -= float(lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + 1e-12));
    }
  }
};

struct TunedLinear {
  Slot slot;
  CompressedLinear* c = nullptr;
  int64_t rows = 0, cols = 0, gs = 0, ng = 0;
  int qmax = 0;
  std::vector<uint8_t> code0, code;  // codes as compressed / now, one byte per weight
  std::vector<float> offset;         // per group: the code of level 0 (zero point, (2^b−1)/2, 1)
  std::vector<float> col_scale;      // 1 / the stored AWQ input scale, or empty
  std::vector<uint8_t> frozen_col;   // outlier columns: their codes stay at level 0
  std::vector<float> unit, fixed, theta, w;  // U, F (empty when none), log s, current W
  std::vector<float> s;                      // per group: exp(θ), or the stored scale of a dead group
  std::vector<uint8_t> live;                 // groups with a positive scale (others stay)
  std::vector<float> dtheta, delta, ddelta;  // codes: relaxation in code units and its gradient
  Adam adam, adam_codes;

  size_t group_of(int64_t r, int64_t i) const { return size_t(r * ng + i / gs); }
  void update_units() {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < cols; ++i) {
        const size_t j = size_t(r * cols + i);
        if (!delta.empty() && !frozen_col[size_t(i)])
          code[j] = uint8_t(std::clamp(std::lround(float(code0[j]) + delta[j]), 0L, long(qmax)));
        unit[j] = (float(code[j]) - offset[group_of(r, i)]) * (col_scale.empty() ? 1.f : col_scale[size_t(i)]);
      }
  }
  // W from θ and the units (s follows θ here: gradient() reads the s of the W it differentiates).
  void rebuild() {
    s.resize(theta.size());
    for (size_t k = 0; k < theta.size(); ++k) s[k] = live[k] ? std::exp(theta[k]) : c->q.scales[k];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < cols; ++i) {
        const size_t j = size_t(r * cols + i);
        w[j] = s[group_of(r, i)] * unit[j] + (fixed.empty() ? 0.f : fixed[j]);
      }
  }
  void gradient(const std::vector<float>& dw) {
    std::fill(dtheta.begin(), dtheta.end(), 0.f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < cols; ++i) {
        const size_t j = size_t(r * cols + i), k = group_of(r, i);
        dtheta[k] += dw[j] * unit[j];
        if (!delta.empty()) {
          // Straight-through: the rounding passes the gradient while the relaxed code is in range.
          const float v = float(code0[j]) + delta[j];
          const bool in = !frozen_col[size_t(i)] && v > -0.5f && v < float(qmax) + 0.5f;
          ddelta[j] = in ? dw[j] * s[k] * (col_scale.empty() ? 1.f : col_scale[size_t(i)]) : 0.f;
        }
      }
    for (size_t k = 0; k < dtheta.size(); ++k) dtheta[k] = live[k] ? dtheta[k] * s[k] : 0.f;
  }
  // Writes the tuned scales (rounded to the layer's scale dtype) and codes back.
  void store() {
    for (size_t k = 0; k < theta.size(); ++k)
      if (live[k]) {
        c->q.scales[k] = c->q.fmt.scale_dtype == DType::F16 ? f16_to_f32_scalar(f32_to_f16_scalar(s[k])) : s[k];
        theta[k] = std::log(c->q.scales[k]);
      }
    if (!delta.empty())
      for (int64_t r = 0; r < rows; ++r)
        pack_codes_ref(&code[size_t(r * cols)], cols, c->q.fmt.bits, c->q.codes.data() + size_t(r) * c->q.packed_row_bytes());
  }
};

TunedLinear make_tuned(CompressedLinear& c, const Slot& slot, bool codes) {
  TunedLinear t;
  t.slot = slot;
  t.c = &c;
  t.rows = c.rows();
  t.cols = c.cols();
  t.gs = c.q.fmt.group_size(t.cols);
  t.ng = c.q.groups_per_row();
  const size_t n = size_t(t.rows * t.cols);
  const QuantFormat& f = c.q.fmt;
  t.qmax = f.ternary ? 2 : (1 << f.bits) - 1;
  t.code0.resize(n);
  for (int64_t r = 0; r < t.rows; ++r)
    unpack_codes_ref(c.q.codes.data() + size_t(r) * c.q.packed_row_bytes(), t.cols, f.bits, &t.code0[size_t(r * t.cols)]);
  t.code = t.code0;
  t.offset.resize(c.q.scales.size());
  for (size_t k = 0; k < t.offset.size(); ++k)
    t.offset[k] = f.ternary ? 1.f : f.symmetric ? 0.5f * float(t.qmax) : c.q.zeros[k];
  if (!c.input_scale.empty()) {
    t.col_scale.resize(size_t(t.cols));
    for (int64_t i = 0; i < t.cols; ++i) t.col_scale[size_t(i)] = 1.f / c.input_scale[size_t(i)];
  }
  t.frozen_col.assign(size_t(t.cols), 0);
  for (int32_t i : c.outlier_cols) t.frozen_col[size_t(i)] = 1;
  t.theta.resize(c.q.scales.size());
  t.live.resize(c.q.scales.size());
  for (size_t k = 0; k < t.theta.size(); ++k) {
    t.live[k] = c.q.scales[k] > 0.f && std::isfinite(c.q.scales[k]);
    t.theta[k] = t.live[k] ? std::log(c.q.scales[k]) : 0.f;
  }
  t.dtheta.assign(t.theta.size(), 0.f);
  t.adam = Adam(t.theta.size());
  if (codes) {
    t.delta.assign(n, 0.f);
    t.ddelta.assign(n, 0.f);
    t.adam_codes = Adam(n);
  }
  t.unit.resize(n);
  t.update_units();
  t.w.resize(n);
  t.rebuild();
  if (!c.outlier_cols.empty() || c.rank > 0) {
    std::vector<float> full(n);
    c.dequantize(full.data());
    t.fixed.resize(n);
    for (size_t i = 0; i < n; ++i) t.fixed[i] = full[i] - t.w[i];
    t.rebuild();
  }
  return t;
}

std::vector<float> dense_copy(const LlamaSource& s, const std::string& name) {
  const Tensor t = s.dense(name);
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// A model's weights held as vectors, with the view LlamaGrad reads.
struct DenseModel {
  std::map<std::string, std::vector<float>> owned;
  LlamaWeightsView view;
  DenseModel(const LlamaSource& s, bool skip_compressed) {
    const LlamaConfig& c = s.cfg;
    // With skip_compressed, compressed layers are left null: the tuner points them at the W it
    // rebuilds each step (a teacher read from a low-bit file is dequantized instead).
    const auto get = [&](const std::string& name) -> const float* {
      return skip_compressed && s.quantized.count(name) ? nullptr : (owned[name] = dense_copy(s, name)).data();
    };
    view.embedding = get("tok_embeddings");
    view.output = s.tied() ? view.embedding : get("output");
    view.final_norm = get("norm");
    view.layers.resize(size_t(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      auto& L = view.layers[size_t(l)];
      L.att_norm = get(p + "attention_norm");
      L.ffn_norm = get(p + "ffn_norm");
      L.wq = get(p + "attention.wq");
      L.wk = get(p + "attention.wk");
      L.wv = get(p + "attention.wv");
      L.wo = get(p + "attention.wo");
      L.w1 = get(p + "feed_forward.w1");
      L.w2 = get(p + "feed_forward.w2");
      L.w3 = get(p + "feed_forward.w3");
    }
  }
};

// softmax of logits [V] into p; returns log-sum-exp.
double log_softmax(const float* z, int64_t V, float* p) {
  float mx = z[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, z[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += (p[i] = std::exp(z[i] - mx));
  for (int64_t i = 0; i < V; ++i) p[i] = float(p[i] / sum);
  return double(mx) + std::log(sum);
}

// Per thread: a pass, its gradients and buffers.
struct Worker {
  LlamaGrad pass;
  LlamaGradients grads;
  std::vector<float> tl, sl;  // teacher / student logits [n, V]
  std::vector<float> pt, ps;  // one position's teacher / student probabilities [V]
  double kl = 0;
  int64_t V;
  Worker(const LlamaConfig& c, int max_len, bool with_output, bool with_embedding)
      : pass(c, max_len), grads(c, with_output, with_embedding), pt(size_t(c.vocab_size)), ps(size_t(c.vocab_size)), V(c.vocab_size) {}

  // KL(teacher ‖ student) summed over the sequence's tokens; with `train`, its gradient times `w`
  // is added to grads.
  void run(const LlamaWeightsView& teacher, const LlamaWeightsView& student, const std::vector<int>& seq, bool train, double w) {
    const int n = int(seq.size());
    tl.resize(size_t(n * V));
    sl.resize(size_t(n * V));
    pass.forward(teacher, seq.data(), n, tl.data());
    pass.forward(student, seq.data(), n, sl.data());
    for (int t = 0; t < n; ++t) {
      const double lt = log_softmax(&tl[size_t(t * V)], V, pt.data());
      const double ls = log_softmax(&sl[size_t(t * V)], V, ps.data());
      double k = 0;
      for (int64_t i = 0; i < V; ++i)
        if (pt[size_t(i)] > 0) k += double(pt[size_t(i)]) * ((double(tl[size_t(t * V + i)]) - lt) - (double(sl[size_t(t * V + i)]) - ls));
      kl += k;
      if (train)
        for (int64_t i = 0; i < V; ++i) sl[size_t(t * V + i)] = float(w * (double(ps[size_t(i)]) - pt[size_t(i)]));
    }
    if (train) pass.backward(student, sl.data(), grads);
  }
};

}  // namespace

TuneReport tune_quantized(const LlamaSource& teacher, LlamaSource& student, const std::vector<std::vector<int>>& calib,
                          const TuneOptions& o, const CompressProgress& progress) {
  const auto t0 = Clock::now();
  const LlamaConfig& c = teacher.cfg;
  require(student.cfg.to_string() == c.to_string(), "tune: the compressed model's config differs from the original's");
  require(!calib.empty(), "tune: no calibration sequences");
  require(o.epochs > 0 && o.batch > 0 && o.lr > 0 && o.codes_lr > 0, "tune: epochs, batch and the step sizes must be positive");
  int max_len = 0;
  for (const auto& s : calib) {
    require(!s.empty(), "tune: empty calibration sequence");
    max_len = std::max(max_len, int(s.size()));
  }
  require(max_len <= c.seq_len, "tune: calibration sequences are longer than the model's context");

  DenseModel tm(teacher, false), sm(student, true);
  std::vector<TunedLinear> tuned;
  for (auto& [name, cl] : student.quantized) {
    require(!cl.ggml && cl.input_perm.empty(), "tune: layer '" + name + "' is " + (cl.ggml ? "a GGUF block matrix" : "act-order (input-permuted)") +
                                                   ": tuning takes tensorzip's own compressed layers");
    tuned.push_back(make_tuned(cl, slot_of(name, c.n_layers), o.codes));
    view_ptr(sm.view, tuned.back().slot) = tuned.back().w.data();
  }
  require(!tuned.empty(), "tune: the model has no compressed layers");
  const bool with_output = std::any_of(tuned.begin(), tuned.end(), [](const TunedLinear& t) { return t.slot.layer < 0; });
  // Dense tensors tuned in place (the student's own copies, owned by sm): RMSNorm weights, the
  // embedding. Adam steps are relative to each tensor's RMS.
  struct DenseParam {
    std::string name;
    std::vector<float>* value;
    std::function<const std::vector<float>&(const LlamaGradients&)> grad;
    double lr_scale = 1;
    Adam adam;
  };
  std::vector<DenseParam> dense;
  const auto add_dense = [&](const std::string& name, std::function<const std::vector<float>&(const LlamaGradients&)> g) {
    std::vector<float>* v = &sm.owned.at(name);
    double ss = 0;
    for (float x : *v) ss += double(x) * x;
    dense.push_back({name, v, std::move(g), std::sqrt(ss / double(v->size())), Adam(v->size())});
  };
  if (o.norms) {
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      add_dense(p + "attention_norm", [l](const LlamaGradients& g) -> const std::vector<float>& { return g.layers[size_t(l)].att_norm; });
      add_dense(p + "ffn_norm", [l](const LlamaGradients& g) -> const std::vector<float>& { return g.layers[size_t(l)].ffn_norm; });
    }
    add_dense("norm", [](const LlamaGradients& g) -> const std::vector<float>& { return g.final_norm; });
  }
  if (o.embedding) add_dense("tok_embeddings", [](const LlamaGradients& g) -> const std::vector<float>& { return g.embedding; });
  TuneReport rep;
  for (const auto& t : tuned) rep.params += int64_t(std::count(t.live.begin(), t.live.end(), uint8_t(1)));
  for (const auto& d : dense) rep.params += int64_t(d.value->size());

  // One worker per sequence of a batch, run on the pool (BLAS single-threaded inside), summed in
  // batch order: the result does not depend on the thread count or on which thread ran what.
  lowrank::ScopedBlasThreads blas_one(1);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < std::max(o.batch, 1); ++i) workers.push_back(std::make_unique<Worker>(c, max_len, with_output, o.embedding));
  const auto run_batch = [&](const std::vector<size_t>& idx, bool train, double w) {
    parallel_for(int64_t(idx.size()), [&](int64_t i, int) {
      Worker& wk = *workers[size_t(i)];
      wk.kl = 0;
      if (train) wk.grads.zero();
      wk.run(tm.view, sm.view, calib[idx[size_t(i)]], train, w);
    });
    double kl = 0;
    for (size_t i = 0; i < idx.size(); ++i) kl += workers[i]->kl;
    if (train)
      for (size_t i = 1; i < idx.size(); ++i) workers[0]->grads.add(workers[i]->grads);
    return kl;
  };
  int64_t total_tokens = 0;
  for (const auto& s : calib) total_tokens += int64_t(s.size());
  const auto mean_kl = [&] {
    std::vector<size_t> all(calib.size());
    std::iota(all.begin(), all.end(), size_t(0));
    double kl = 0;
    for (size_t b = 0; b < all.size(); b += workers.size()) {
      std::vector<size_t> idx(all.begin() + ptrdiff_t(b), all.begin() + ptrdiff_t(std::min(all.size(), b + workers.size())));
      kl += run_batch(idx, false, 0);
    }
    return kl / double(total_tokens);
  };

  rep.kl_before = mean_kl();
  // What the tuner may replace, kept so a diverging run can give the model back unchanged.
  std::vector<std::pair<std::vector<float>, std::vector<uint8_t>>> saved_layers;
  for (const auto& t : tuned) saved_layers.emplace_back(t.c->q.scales, t.c->q.codes);
  std::map<std::string, Tensor> saved_dense;
  for (const auto& d : dense) saved_dense[d.name] = student.get(d.name);
  const int steps_per_epoch = int((calib.size() + size_t(o.batch) - 1) / size_t(o.batch));
  const int total_steps = steps_per_epoch * o.epochs;
  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(calib.size());
  std::iota(order.begin(), order.end(), size_t(0));
  int step = 0;
  for (int e = 0; e < o.epochs && rep.diverged_at == 0; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int b = 0; b < steps_per_epoch; ++b) {
      std::vector<size_t> idx(order.begin() + ptrdiff_t(b) * o.batch,
                              order.begin() + ptrdiff_t(std::min(order.size(), size_t(b + 1) * size_t(o.batch))));
      int64_t ntok = 0;
      for (size_t i : idx) ntok += int64_t(calib[i].size());
      const double batch_kl = run_batch(idx, true, 1.0 / double(ntok));
      ++step;
      if (!std::isfinite(batch_kl)) {  // diverged: no step taken from a non-finite gradient
        rep.diverged_at = step;
        break;
      }
      const double lr = o.lr * 0.5 * (1 + std::cos(M_PI * double(step - 1) / double(total_steps)));
      LlamaGradients& g = workers[0]->grads;
      for (auto& t : tuned) {
        t.gradient(grad_of(g, t.slot));
        t.adam.step(t.theta.data(), t.dtheta.data(), t.theta.size(), lr, step);
        if (o.codes) {
          t.adam_codes.step(t.delta.data(), t.ddelta.data(), t.delta.size(), o.codes_lr * lr / o.lr, step);
          t.update_units();
        }
        t.rebuild();
      }
      for (auto& d : dense) d.adam.step(d.value->data(), d.grad(g).data(), d.value->size(), lr * d.lr_scale, step);
      if (progress) progress("tuning", step, total_steps);
    }
  }
  for (auto& t : tuned) {
    t.store();
    t.rebuild();
    if (o.codes)
      for (size_t j = 0; j < t.code.size(); ++j) rep.codes_changed += t.code[j] != t.code0[j];
  }
  for (const auto& d : dense) {
    Tensor t = Tensor::empty(DType::F32, student.get(d.name).shape());
    std::copy(d.value->begin(), d.value->end(), t.data<float>());
    student.tensors[d.name] = t;
  }
  rep.kl_after = mean_kl();
  rep.steps = rep.diverged_at > 0 ? rep.diverged_at : total_steps;
  if (!(rep.kl_after < rep.kl_before)) {  // worse, or NaN: the compressed model as it came in
    rep.reverted = true;
    for (size_t i = 0; i < tuned.size(); ++i) {
      tuned[i].c->q.scales = saved_layers[i].first;
      tuned[i].c->q.codes = saved_layers[i].second;
    }
    for (auto& [name, t] : saved_dense) student.tensors[name] = t;
    rep.codes_changed = 0;
  }
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rep;
}

}  // namespace tz
