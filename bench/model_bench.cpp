// See model_bench.h.
#include "bench/model_bench.h"

#include <fmt/core.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "tensorzip/error.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"

namespace tz::bench {
namespace {

LlamaConfig parse_synthetic(const std::string& s) {
  int layers = 0;
  if (std::sscanf(s.c_str(), "7b:%d", &layers) == 1 && layers >= 1) return llama2_7b_config(layers);
  LlamaConfig c = llama2_7b_config(1);
  int dim = 0, hidden = 0, heads = 0;
  require(std::sscanf(s.c_str(), "%d,%d,%d,%d", &dim, &hidden, &heads, &layers) == 4 && dim > 0 && hidden > 0 && heads > 0 && layers > 0,
          "bench model: --synthetic takes 7b:LAYERS or DIM,HIDDEN,HEADS,LAYERS; got '" + s + "'");
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_heads = c.n_kv_heads = heads;
  c.n_layers = layers;
  return c;
}


}  // namespace

int model_bench_cases(const ModelBenchOptions& o) {
  return int(o.formats.size() + (o.baseline ? 1 : 0)) * int(std::max<size_t>(1, o.threads.size()));
}

void bench_model(const ModelBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress) {
  progress("loading model");
  const LlamaSource src = o.model.empty() ? synthetic_llama(parse_synthetic(o.synthetic)) : load_llama(o.model);
  const LlamaConfig& c = src.cfg;
  require(o.prefill >= 1 && o.decode >= 1 && o.prefill + o.decode < c.seq_len,
          "bench model: --prefill + --decode must be below the model's context (" + std::to_string(c.seq_len) + ")");
  std::vector<std::string> formats = o.formats;
  if (!o.baseline) std::erase(formats, std::string("f32"));
  else if (std::find(formats.begin(), formats.end(), "f32") == formats.end()) formats.insert(formats.begin(), "f32");
  require(!formats.empty(), "bench model: --no-baseline needs a format other than f32 in --formats");
  std::stable_partition(formats.begin(), formats.end(), [](const std::string& f) { return f == "f32"; });  // baseline first
  const std::vector<int> threads = o.threads.empty() ? std::vector<int>{num_threads()} : o.threads;
  std::vector<std::vector<int>> docs;
  std::optional<Tokenizer> tok;
  if (!o.text.empty()) {
    require(!o.model.empty(), "bench model: --text needs a real model (-m)");
    tok = default_tokenizer(src, o.model);
    docs = split_documents(io::read_text_file(o.text), *tok, "\n\n", o.max_docs, c.seq_len);
  }
  // Deterministic prompt tokens (ids in the vocabulary, no BOS semantics needed for timing).
  std::vector<int> prompt(size_t(o.prefill));
  for (int i = 0; i < o.prefill; ++i) prompt[size_t(i)] = int((uint64_t(i) * 2654435761u + 7) % uint64_t(c.vocab_size));
  const std::string shape = o.model.empty() ? fmt::format("synthetic {}", c.to_string()) : o.model;
  struct Summary {
    std::string format;
    int threads;
    double bpw, mib, prefill_tps, decode_tps, prefill_x, decode_x;
    std::optional<double> ppl;
    double prefill_best_tps = 0, decode_best_tps = 0;
  };
  std::vector<Summary> summary;
  std::map<int, std::pair<double, double>> f32_ms;  // threads -> (prefill ms, decode ms per token)
  std::vector<float> f32_logits;
  for (const auto& f : formats) {
    progress("packing " + f);
    auto model = std::make_unique<LlamaModel>(src, FormatSpec(f));
    LlamaSession s(*model, o.prefill + o.decode + 1);
    std::vector<float> logits(size_t(c.vocab_size));
    double err = 0;
    s.forward(prompt.data(), o.prefill, 0, logits.data());
    if (f == "f32") f32_logits = logits;
    else if (o.baseline) err = max_rel_err(logits.data(), f32_logits.data(), logits.size());
    std::optional<double> ppl;
    if (!docs.empty()) {
      LlamaSession ps(*model, c.seq_len);
      ppl = evaluate_perplexity(ps, docs, c.seq_len, c.seq_len).perplexity();
    }
    const double linear_params = [&] {
      double p = double(c.vocab_size) * c.dim;
      p += double(c.n_layers) * (2.0 * c.dim * c.dim + 2.0 * c.dim * c.kv_dim() + 3.0 * c.dim * c.hidden_dim);
      return p;
    }();
    for (int t : threads) {
      set_num_threads(t);
      progress(fmt::format("{} threads={}", f, t));
      const Timing pre = time_it([&](int) { s.forward(prompt.data(), o.prefill, 0, logits.data()); }, o.warmup, o.repeats, o.budget_s, 2);
      const Timing dec = time_it(
          [&](int) {
            // From an empty context, as llama-bench's tg: positions 0 .. decode-1 (causal attention
            // reads only what these steps wrote).
            int tok_id = prompt[0];
            for (int p = 0; p < o.decode; ++p) {
              s.forward(&tok_id, 1, p, logits.data());
              tok_id = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
            }
          },
          o.warmup, o.repeats, o.budget_s, 2);
      if (f == "f32") f32_ms[t] = {pre.ms_median, dec.ms_median / o.decode};
      summary.push_back({f, t, double(model->linear_bytes()) * 8 / linear_params, double(model->weight_bytes()) / (1 << 20),
                         o.prefill / (pre.ms_median / 1e3), o.decode / (dec.ms_median / 1e3), f32_ms[t].first / pre.ms_median,
                         f32_ms[t].second / (dec.ms_median / o.decode), ppl, o.prefill / (pre.ms_min / 1e3),
                         o.decode / (dec.ms_min / 1e3)});
      for (int phase = 0; phase < 2; ++phase) {
        Row r;
        r.op = phase == 0 ? "model_prefill" : "model_decode";
        r.impl = f;
        r.dtype = model->format_summary();
        r.shape = shape;
        r.threads = t;
        r.cache = "cold";  // weights of a real layer stack exceed the LLC; small models stay hot
        const int tokens = phase == 0 ? o.prefill : 1;
        r.t = phase == 0 ? pre : Timing{dec.ms_min / o.decode, dec.ms_median / o.decode, dec.reps};
        r.flops = 2.0 * linear_params * tokens;
        r.bytes = double(model->weight_bytes());
        r.baseline = f == "f32" || !o.baseline ? "" : "f32";
        r.baseline_ms = f == "f32" || !o.baseline ? 0 : (phase == 0 ? f32_ms[t].first : f32_ms[t].second);
        r.max_rel_err = err;
        r.extra["tokens"] = tokens;
        r.extra["tokens_per_s"] = tokens / (r.t.ms_median / 1e3);
        r.extra["weight_bytes"] = model->weight_bytes();
        r.extra["perplexity"] = ppl ? nlohmann::ordered_json(*ppl) : nlohmann::ordered_json(nullptr);
        rep.add(r);
      }
    }
  }
  if (rep.json()) return;
  // Side by side: one line per format and thread count.
  fmt::print("\n{:<10} {:>3} {:>9} {:>10} {:>11} {:>15} {:>15}\n", "format", "thr", "bits/w", "MiB", "perplexity",
             "prefill tok/s", "decode tok/s");
  const auto ratio = [&](double x) { return o.baseline ? fmt::format("{:.2f}x", x) : std::string("-"); };
  for (const auto& r : summary)
    fmt::print("{:<10} {:>3} {:>9.2f} {:>10.1f} {:>11} {:>8.1f} {:>6} {:>8.1f} {:>6}\n", r.format, r.threads, r.bpw, r.mib,
               r.ppl ? fmt::format("{:.4f}", *r.ppl) : "-", r.prefill_tps, ratio(r.prefill_x), r.decode_tps, ratio(r.decode_x));
  // The same in llama-bench's terms, to set beside `llama-bench -p N -n M -t T` on the same file:
  // pp N = N prompt tokens in one batch, tg M = M tokens generated one at a time from an empty
  // context, t/s = median (best) over the repeats.
  fmt::print("\n| model | threads | test | t/s |\n| --- | ---: | ---: | ---: |\n");
  for (const auto& r : summary) {
    fmt::print("| {} | {} | pp{} | {:.2f} ({:.2f}) |\n", r.format, r.threads, o.prefill, r.prefill_tps, r.prefill_best_tps);
    fmt::print("| {} | {} | tg{} | {:.2f} ({:.2f}) |\n", r.format, r.threads, o.decode, r.decode_tps, r.decode_best_tps);
  }
}

}  // namespace tz::bench
