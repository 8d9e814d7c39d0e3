// compress_llama (layer-by-layer calibration through the runner) and compress_tensors (any
// checkpoint, captured activations). See compress.h.
#include <fnmatch.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "quant/linear_names.h"
#include "tensorzip/compress.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"

namespace tz {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Linear layers that read the same input share one set of statistics.
std::string input_group(const std::string& linear) {
  if (linear == "attention.wq" || linear == "attention.wk" || linear == "attention.wv") return "attention.wq";
  if (linear == "feed_forward.w1" || linear == "feed_forward.w3") return "feed_forward.w1";
  return linear;
}

Linear& linear_of(LlamaModel& m, int l, const std::string& which) {
  auto& L = m.layers[size_t(l)];
  if (which == "attention.wq") return L.wq;
  if (which == "attention.wk") return L.wk;
  if (which == "attention.wv") return L.wv;
  if (which == "attention.wo") return L.wo;
  if (which == "feed_forward.w1") return L.w1;
  if (which == "feed_forward.w2") return L.w2;
  return L.w3;
}


// q4g32a+o4+r8+s: format, outliers, low-rank rank, stored AWQ scales.
std::string describe(const CompressedLinear& c) {
  return c.q.fmt.spec() + (c.outlier_cols.empty() ? "" : "+o" + std::to_string(c.outlier_cols.size())) +
         (c.rank > 0 ? "+r" + std::to_string(c.rank) : "") + (c.input_scale.empty() ? "" : "+s");
}

bool needs_hessian(const QuantizeOptions& q) {
  return q.method == QuantMethod::Gptq || (q.lowrank > 0 && q.lowrank_method == LowRankMethod::Eora);
}
bool needs_stats(const QuantizeOptions& q) {
  return needs_hessian(q) || q.method == QuantMethod::Awq || q.outliers > 0;
}

// Compresses one matrix and reports on it.
LayerReport compress_one(const std::string& name, const Tensor& w, const ActStats* st, const QuantizeOptions& q,
                         CompressedLinear& out, const std::string& label) {
  const auto t0 = Clock::now();
  try {
    out = compress_linear(w.data<float>(), w.dim(0), w.dim(1), st, q);
  } catch (const Error& e) {
    throw Error(label + ": tensor '" + name + "': " + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(label + ": tensor '" + name + "': out of memory compressing " + shape_to_string(w.shape()));
  }
  LayerReport r;
  r.seconds = since(t0);
  r.name = name;
  r.rows = w.dim(0);
  r.cols = w.dim(1);
  r.method = out.method;
  r.format = describe(out);
  r.bits_per_weight = out.bits_per_weight();
  std::vector<float> w_hat(size_t(w.numel()));
  out.dequantize(w_hat.data());
  const QuantError e = quant_error(w.data<float>(), w_hat.data(), r.rows, r.cols, st);
  r.weight_rel_err = e.weight_rel;
  r.output_rel_err = e.output_rel;
  return r;
}

// Mixed precision: per linear, the relative output error at each candidate width (RTN, measured on
// its calibration sample); then, from the narrowest width everywhere, repeatedly widen the layer
// with the largest error drop per extra byte until the next step would pass the target.
std::map<std::string, int> choose_bits(const std::map<std::string, std::vector<double>>& err,
                                       const std::map<std::string, std::pair<int64_t, int64_t>>& shape,
                                       const std::vector<int>& bits, double target_bpw, const QuantFormat& f) {
  const auto bpw = [&](int b, int64_t cols) {
    QuantFormat g = f;
    g.bits = b;
    const double gs = double(g.group_size(cols));
    return b + ((g.scale_dtype == DType::F16 ? 16.0 : 32.0) + (g.symmetric ? 0.0 : 8.0)) / gs;
  };
  std::map<std::string, size_t> pick;
  double total_bits = 0, total_params = 0;
  for (const auto& [name, e] : err) {
    pick[name] = 0;
    total_params += double(shape.at(name).first);
  }
  const auto params = [&](const std::string& name) { return shape.at(name).first; };
  const auto cols_of = [&](const std::string& name) { return shape.at(name).second; };
  for (const auto& [name, k] : pick) total_bits += bpw(bits[k], cols_of(name)) * double(params(name));
  while (true) {
    std::string best;
    double best_gain = 0, best_cost = 0;
    for (const auto& [name, k] : pick) {
      if (k + 1 >= bits.size()) continue;
      const auto& e = err.at(name);
      const double cost = (bpw(bits[k + 1], cols_of(name)) - bpw(bits[k], cols_of(name))) * double(params(name));
      const double gain = (e[k] - e[k + 1]) / cost;
      if (total_bits + cost > target_bpw * total_params) continue;
      if (best.empty() || gain > best_gain) {
        best = name;
        best_gain = gain;
        best_cost = cost;
      }
    }
    if (best.empty()) break;
    ++pick[best];
    total_bits += best_cost;
  }
  std::map<std::string, int> out;
  for (const auto& [name, k] : pick) out[name] = bits[k];
  return out;
}

// Divides row r of a compressed layer by d[r] (its scales, outlier weights and L rows): exact up to
// the scales' storage rounding.
void divide_rows(CompressedLinear& c, const std::vector<float>& d) {
  const int64_t ng = c.q.groups_per_row(), k = int64_t(c.outlier_cols.size());
  const auto round = [&](float v) { return c.q.fmt.scale_dtype == DType::F16 ? f16_to_f32_scalar(f32_to_f16_scalar(v)) : v; };
  for (int64_t r = 0; r < c.rows(); ++r) {
    const float inv = 1.f / d[size_t(r)];
    for (int64_t g = 0; g < ng; ++g) c.q.scales[size_t(r * ng + g)] = round(c.q.scales[size_t(r * ng + g)] * inv);
    for (int64_t j = 0; j < k; ++j) c.outlier_w[size_t(r * k + j)] = f16_to_f32_scalar(f32_to_f16_scalar(c.outlier_w[size_t(r * k + j)] * inv));
    for (int64_t j = 0; j < c.rank; ++j) c.lora_l[size_t(r * c.rank + j)] *= inv;
  }
}

// Moves AWQ's input scales out of layer l's linear layers into the operations before them:
// q/k/v and gate/up scales into the RMSNorm weights, o's into V's output rows (multi-head only),
// down's into up's output rows. Layers left dense in a group take W·diag(s) so the math is unchanged.
void fold_awq_scales(LlamaSource& out, LlamaModel& model, int l, const std::map<std::string, std::vector<float>>& s) {
  const std::string p = "layers." + std::to_string(l) + ".";
  auto& L = model.layers[size_t(l)];
  const auto drop_scale = [&](const std::string& w, const std::vector<float>& sc) {
    if (auto it = out.quantized.find(p + w); it != out.quantized.end()) {
      it->second.input_scale.clear();
      linear_of(model, l, w) = Linear::from_compressed(it->second);
    } else {  // dense: W·diag(s)
      Tensor t = out.get(p + w).clone();
      for (int64_t r = 0; r < t.dim(0); ++r)
        for (int64_t c = 0; c < t.dim(1); ++c) t.data<float>()[r * t.dim(1) + c] *= sc[size_t(c)];
      out.tensors[p + w] = t;
      linear_of(model, l, w) = Linear::build(t, WeightFormat::parse("f32"));
    }
  };
  const auto divide_out_rows = [&](const std::string& w, const std::vector<float>& sc) {
    if (auto it = out.quantized.find(p + w); it != out.quantized.end()) {
      divide_rows(it->second, sc);
      linear_of(model, l, w) = Linear::from_compressed(it->second);
    } else {
      Tensor t = out.get(p + w).clone();
      for (int64_t r = 0; r < t.dim(0); ++r)
        for (int64_t c = 0; c < t.dim(1); ++c) t.data<float>()[r * t.dim(1) + c] /= sc[size_t(r)];
      out.tensors[p + w] = t;
      linear_of(model, l, w) = Linear::build(t, WeightFormat::parse("f32"));
    }
  };
  const auto divide_norm = [&](const std::string& norm, std::vector<float>& runtime, const std::vector<float>& sc) {
    Tensor t = out.get(p + norm).clone();
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] /= sc[size_t(i)];
    out.tensors[p + norm] = t;
    runtime.assign(t.data<float>(), t.data<float>() + t.numel());
  };
  if (auto it = s.find("attention.wq"); it != s.end()) {
    for (const char* w : {"attention.wq", "attention.wk", "attention.wv"}) drop_scale(w, it->second);
    divide_norm("attention_norm", L.att_norm, it->second);
  }
  if (auto it = s.find("feed_forward.w1"); it != s.end()) {
    for (const char* w : {"feed_forward.w1", "feed_forward.w3"}) drop_scale(w, it->second);
    divide_norm("ffn_norm", L.ffn_norm, it->second);
  }
  if (auto it = s.find("attention.wo"); it != s.end()) {
    drop_scale("attention.wo", it->second);
    divide_out_rows("attention.wv", it->second);
  }
  if (auto it = s.find("feed_forward.w2"); it != s.end()) {
    drop_scale("feed_forward.w2", it->second);
    divide_out_rows("feed_forward.w3", it->second);
  }
}

}  // namespace

// Every --include / --exclude glob must match some candidate: a typo would otherwise compress
// everything or nothing without a word.
void require_globs_match(const std::vector<std::string>& candidates, const CompressOptions& o, const std::string& label) {
  for (const auto* list : {&o.include, &o.exclude})
    for (const auto& g : *list) {
      bool any = false;
      for (const auto& n : candidates) any |= fnmatch(g.c_str(), n.c_str(), 0) == 0;
      require(any, label + ": --" + (list == &o.include ? "include" : "exclude") + " '" + g + "' matches no tensor (names look like " +
                       (candidates.empty() ? std::string("-") : candidates.front()) + ")");
    }
}

bool name_selected(const std::string& name, const CompressOptions& o) {
  bool in = false;
  for (const auto& g : o.include) in |= fnmatch(g.c_str(), name.c_str(), 0) == 0;
  for (const auto& g : o.exclude) in &= fnmatch(g.c_str(), name.c_str(), 0) != 0;
  return in;
}

CompressResult compress_llama(const LlamaSource& src, const std::vector<std::vector<int>>& calib, const CompressOptions& o,
                              const CompressProgress& progress) {
  const auto t_start = Clock::now();
  src.validate();
  const LlamaConfig& c = src.cfg;
  require(!(needs_stats(o.quant) || o.target_bpw > 0) || !calib.empty(), "compress: " + std::string(quant_method_name(o.quant.method)) +
                                               (o.target_bpw > 0 ? " with --target-bpw" : "") + " needs calibration data");
  require(o.target_bpw == 0 || (o.target_bpw >= o.candidate_bits.front() && !o.candidate_bits.empty()),
          "compress: --target-bpw is below the narrowest candidate width");
  require(o.tune.epochs == 0 || !calib.empty(), "compress: tuning the scales needs calibration data");
  {
    std::vector<std::string> linears;
    for (int l = 0; l < c.n_layers; ++l)
      for (const char* w : kLinears) linears.push_back("layers." + std::to_string(l) + "." + w);
    linears.push_back("output");
    require_globs_match(linears, o, src.label);
  }
  // With calibration data every layer's statistics are collected (the report's output error).
  const bool stats_needed = !calib.empty();
  LlamaModel model(src, FormatSpec("f32"));
  int max_len = 1;
  for (const auto& s : calib) {
    require(!s.empty(), "compress: empty calibration sequence");
    max_len = std::max(max_len, int(s.size()));
    for (int t : s) require(t >= 0 && t < c.vocab_size, "compress: calibration token outside the vocabulary");
  }
  require(max_len <= c.seq_len, "compress: calibration sequences are longer than the model's context");
  LlamaSession session(model, max_len);
  const auto embed = [&] {
    std::vector<std::vector<float>> xs;
    for (const auto& s : calib) {
      std::vector<float> x(s.size() * size_t(c.dim));
      for (size_t t = 0; t < s.size(); ++t)
        model.embed(s[t], &x[t * size_t(c.dim)]);
      xs.push_back(std::move(x));
    }
    return xs;
  };
  // Collects layer l's input statistics over every sequence (propagating x through layer l).
  const auto collect = [&](int l, std::vector<std::vector<float>>& xs, bool hessian, bool propagate) {
    std::map<std::string, std::unique_ptr<ActStats>> st;
    session.set_activation_hook([&](const std::string& name, const float* x, int64_t n, int64_t in) {
      const std::string which = name.substr(name.find('.', 7) + 1);
      if (input_group(which) != which) return;
      auto& s = st[which];
      if (!s) s = std::make_unique<ActStats>(in, hessian, o.sample_rows);
      s->add(x, n);
    });
    for (size_t i = 0; i < calib.size(); ++i) {
      std::vector<float> tmp;
      if (!propagate) tmp = xs[i];
      session.run_layer(l, propagate ? xs[i].data() : tmp.data(), int(calib[i].size()), 0);
    }
    session.set_activation_hook(nullptr);
    return st;
  };
  const auto head_stats = [&](const std::vector<std::vector<float>>& xs, bool hessian) {
    auto s = std::make_unique<ActStats>(c.dim, hessian, o.sample_rows);
    for (size_t i = 0; i < calib.size(); ++i) {
      std::vector<float> h(xs[i].size());
      session.head_input(xs[i].data(), int(calib[i].size()), h.data());
      s->add(h.data(), int64_t(calib[i].size()));
    }
    return s;
  };

  std::vector<std::string> selected;
  for (int l = 0; l < c.n_layers; ++l)
    for (const char* w : kLinears)
      if (name_selected("layers." + std::to_string(l) + "." + w, o)) selected.push_back("layers." + std::to_string(l) + "." + w);
  const bool do_output = name_selected("output", o);
  if (do_output) selected.push_back("output");
  const int total = int(selected.size());

  // Mixed precision: sensitivities on the uncompressed model first.
  std::map<std::string, int> bits;
  if (o.target_bpw > 0) {
    std::map<std::string, std::vector<double>> err;
    std::map<std::string, std::pair<int64_t, int64_t>> params;  // numel, cols
    auto xs = embed();
    const auto measure = [&](const std::string& name, const ActStats& s) {
      const Tensor w = src.dense(name);
      params[name] = {w.numel(), w.dim(1)};
      for (int b : o.candidate_bits) {
        QuantizeOptions q;
        q.fmt = o.quant.fmt;
        q.fmt.bits = b;
        const CompressedLinear cl = compress_linear(w.data<float>(), w.dim(0), w.dim(1), &s, q);
        std::vector<float> w_hat(size_t(w.numel()));
        cl.dequantize(w_hat.data());
        const double e = quant_error(w.data<float>(), w_hat.data(), w.dim(0), w.dim(1), &s).output_rel;
        err[name].push_back(e * e);
      }
    };
    for (int l = 0; l < c.n_layers; ++l) {
      if (progress) progress("sensitivity of layer " + std::to_string(l), l, c.n_layers);
      auto st = collect(l, xs, false, true);
      for (const char* w : kLinears) {
        const std::string name = "layers." + std::to_string(l) + "." + w;
        if (name_selected(name, o)) measure(name, *st.at(input_group(w)));
      }
    }
    if (do_output) measure("output", *head_stats(xs, false));
    bits = choose_bits(err, params, o.candidate_bits, o.target_bpw, o.quant.fmt);
  }

  CompressResult res;
  res.model = src;
  res.model.densify_blocks();
  int done = 0;
  auto xs = embed();
  const auto compress_named = [&](const std::string& name, const ActStats* st, Linear* slot, const std::vector<float>* awq_s = nullptr) {
    if (progress) progress(name, done, total);
    QuantizeOptions q = o.quant;
    q.awq_scale = awq_s;
    if (auto it = bits.find(name); it != bits.end()) q.fmt.bits = it->second;
    CompressedLinear cl;
    res.layers.push_back(compress_one(name, src.dense(name), st, q, cl, src.label));
    if (slot) *slot = Linear::from_compressed(cl);
    res.model.tensors.erase(name);
    res.model.quantized[name] = std::move(cl);
    ++done;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    bool any = false;
    for (const char* w : kLinears) any |= name_selected("layers." + std::to_string(l) + "." + w, o);
    if (any) {
      std::map<std::string, std::unique_ptr<ActStats>> st;
      if (stats_needed) st = collect(l, xs, needs_hessian(o.quant), false);
      const std::string p = "layers." + std::to_string(l) + ".";
      // AWQ with folding: one scale per input group, searched over the group's layers together.
      std::map<std::string, std::vector<float>> awq_s;
      const bool fold_o = c.n_heads == c.n_kv_heads;  // with GQA an attention channel's V row is shared
      // Folding moves AWQ's scales into the RMSNorm before q/k/v and gate/up and into v / up rows:
      // exact for LLaMA's layer, not with biases, q/k norms or missing pre-norms, which then keep
      // each layer's input scale instead.
      if ((o.quant.method == QuantMethod::Awq || (o.quant.method == QuantMethod::Gptq && o.quant.gptq_awq)) && o.fold_awq &&
          c.plain_llama()) {
        for (const char* g : {"attention.wq", "attention.wo", "feed_forward.w1", "feed_forward.w2"}) {
          if (std::string(g) == "attention.wo" && !fold_o) continue;
          std::vector<Tensor> dense;
          std::vector<std::pair<const float*, int64_t>> members;
          for (const char* w : kLinears)
            if (input_group(w) == g && name_selected(p + w, o)) {
              dense.push_back(src.dense(p + w));
              members.emplace_back(dense.back().data<float>(), dense.back().dim(0));
            }
          if (!members.empty()) awq_s[g] = awq_search(members, dense[0].dim(1), *st.at(g), o.quant);
        }
      }
      // True sequential: each input group's statistics are collected with the groups before it
      // (q/k/v, then o, then gate/up, then down) already compressed, so every layer is fitted to
      // the inputs it will see.
      const bool sequential = o.true_sequential && awq_s.empty() && stats_needed;
      for (const char* g : {"attention.wq", "attention.wo", "feed_forward.w1", "feed_forward.w2"}) {
        bool stage = false;
        for (const char* w : kLinears) stage |= input_group(w) == g && name_selected(p + w, o);
        if (!stage) continue;
        if (sequential && std::string(g) != "attention.wq") st = collect(l, xs, needs_hessian(o.quant), false);
        for (const char* w : kLinears) {
          const std::string name = p + w;
          if (input_group(w) != g || !name_selected(name, o)) continue;
          auto it = awq_s.find(g);
          compress_named(name, stats_needed ? st.at(g).get() : nullptr, &linear_of(model, l, w), it == awq_s.end() ? nullptr : &it->second);
        }
      }
      if (!awq_s.empty()) fold_awq_scales(res.model, model, l, awq_s);
    }
    // The next layer's input comes out of this (compressed) layer.
    if (stats_needed && (l + 1 < c.n_layers || do_output))
      for (size_t i = 0; i < calib.size(); ++i) session.run_layer(l, xs[i].data(), int(calib[i].size()), 0);
  }
  if (do_output) compress_named("output", stats_needed ? head_stats(xs, needs_hessian(o.quant)).get() : nullptr, nullptr);
  for (auto& r : res.layers) {  // folding moved AWQ scales out of the layers: report what is stored
    const auto& c = res.model.quantized.at(r.name);
    r.format = describe(c);
    r.bits_per_weight = c.bits_per_weight();
  }
  if (o.tune.epochs > 0) {
    res.tune = tune_quantized(src, res.model, calib, o.tune, progress);
  }
  if (progress) progress("done", total, total);
  res.seconds = since(t_start);
  return res;
}

CompressResult compress_tensors(const LlamaSource& src, const io::SafetensorsFile* acts, const CompressOptions& o,
                                const CompressProgress& progress) {
  const auto t_start = Clock::now();
  const bool stats_needed = needs_stats(o.quant);
  require(o.tune.epochs == 0, "compress: tuning the scales needs a LLaMA-family model (it runs the model)");
  require(o.target_bpw == 0, "compress: --target-bpw needs a LLaMA-family model (layer-by-layer calibration)");
  require(!stats_needed || acts != nullptr,
          "compress: " + std::string(quant_method_name(o.quant.method)) + " needs calibration activations (--calib ACTIVATIONS.safetensors)");
  std::vector<std::string> selected, matrices;
  for (const auto& [name, t] : src.tensors)
    if (t.ndim() == 2) matrices.push_back(name);
  require_globs_match(matrices, o, src.label);
  for (const auto& name : matrices)
    if (name_selected(name, o)) selected.push_back(name);
  require(!selected.empty(), src.label + ": no 2-D tensor matches --include / --exclude");
  CompressResult res;
  res.model = src;
  res.model.densify_blocks();
  int done = 0;
  for (const auto& name : selected) {
    if (progress) progress(name, done, int(selected.size()));
    const Tensor& w = src.get(name);
    std::unique_ptr<ActStats> st;
    if (stats_needed) {
      // Captured activations are named like the weight, or like it without ".weight".
      std::string an = name;
      if (acts->find(an) == nullptr && an.size() > 7 && an.substr(an.size() - 7) == ".weight") an = an.substr(0, an.size() - 7);
      require(acts->find(an) != nullptr, acts->label() + ": no activations named '" + name + "'");
      const Tensor a = acts->tensor(an).to(DType::F32);
      require(a.ndim() == 2 && a.dim(1) == w.dim(1), acts->label() + ": activations '" + an + "' are " + shape_to_string(a.shape()) +
                                                         ", the weight has " + std::to_string(w.dim(1)) + " input channels");
      st = std::make_unique<ActStats>(w.dim(1), needs_hessian(o.quant), o.sample_rows);
      st->add(a.data<float>(), a.dim(0));
    }
    CompressedLinear cl;
    res.layers.push_back(compress_one(name, w, st.get(), o.quant, cl, src.label));
    res.model.tensors.erase(name);
    res.model.quantized[name] = std::move(cl);
    ++done;
  }
  if (progress) progress("done", done, done);
  res.seconds = since(t_start);
  return res;
}

}  // namespace tz
