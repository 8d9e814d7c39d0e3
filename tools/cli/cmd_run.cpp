// `tensorzip run` (generate text, llama2.c's `run` semantics) and `tensorzip eval` (perplexity,
// tokens/s, peak memory; optional capture of every linear layer's input activations).
#include <fmt/core.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/progress.h"

namespace tz::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

struct ModelOpts {
  std::string model, tokenizer, weights = "native", lora;
  bool json = false;
};

void add_model_options(CLI::App* c, ModelOpts& o) {
  c->add_option("-m,--model", o.model, "Model: llama2.c .bin, GGUF (llama), or a Hugging Face directory")->required();
  c->add_option("-z,--tokenizer", o.tokenizer,
                "Tokenizer (llama2.c tokenizer.bin or tokenizer.json; default: the one inside the model, else tokenizer.bin beside it)");
  c->add_option("--weights", o.weights,
                "Weight format of the linear layers: native (as stored: GGUF q4_0/q8_0 run low-bit, dense weights f32), f32, bf16, q1..q8[gG][a], t; overrides by name, e.g. q4,output=q8,layers.0.*=f32")
      ->capture_default_str();
  c->add_option("--lora", o.lora, "A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), applied unmerged");
}

struct Loaded {
  LlamaSource src;
  Tokenizer tok;
  std::unique_ptr<LlamaModel> model;
  double load_s = 0;
};

Loaded load(const ModelOpts& o, bool need_tokenizer = true) {
  const auto t0 = Clock::now();
  Loaded L{load_llama(o.model), Tokenizer(), nullptr, 0};
  if (need_tokenizer) {
    if (o.tokenizer.empty()) {
      L.tok = default_tokenizer(L.src, o.model);
    } else if (o.tokenizer.size() > 5 && o.tokenizer.substr(o.tokenizer.size() - 5) == ".json") {
      L.tok = Tokenizer::from_hf_json(o.tokenizer);
    } else {
      L.tok = Tokenizer::from_llama2c(o.tokenizer, L.src.cfg.vocab_size);
    }
    require(L.tok.vocab_size() >= L.src.cfg.vocab_size || L.tok.vocab_size() == L.src.cfg.vocab_size,
            L.tok.label() + ": tokenizer has " + std::to_string(L.tok.vocab_size()) + " tokens, the model " +
                std::to_string(L.src.cfg.vocab_size));
  }
  const FormatSpec spec(o.weights);
  Progress bar(L.src.cfg.n_layers * 7 + 1, !o.json && o.weights != "f32" && o.weights != "native");
  L.model = std::make_unique<LlamaModel>(L.src, spec, [&](int i, int) { bar.step("packing weights " + std::to_string(i)); });
  bar.done();
  if (!o.lora.empty()) L.model->attach_lora(read_peft_adapter(o.lora));
  L.load_s = seconds_since(t0);
  return L;
}

// llama2.c's safe_printf: a lone byte that is neither printable nor whitespace is not printed.
void print_piece(const std::string& p) {
  if (p.empty()) return;
  if (p.size() == 1 && !(std::isprint(static_cast<unsigned char>(p[0])) || std::isspace(static_cast<unsigned char>(p[0]))))
    return;
  std::fwrite(p.data(), 1, p.size(), stdout);
  std::fflush(stdout);
}

// ------------------------------------------------------------------ run

struct RunOpts {
  ModelOpts m;
  std::string prompt, prompt_file;
  int steps = 256;
  float temp = 1.0f, top_p = 0.9f;
  int64_t seed = -1;
};

void run_generate(const RunOpts& o) {
  require(o.prompt.empty() || o.prompt_file.empty(), "run: give the prompt with -p or -f, not both");
  const std::string prompt_text = o.prompt_file.empty() ? o.prompt : io::read_text_file(o.prompt_file);
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  int steps = o.steps <= 0 || o.steps > c.seq_len ? c.seq_len : o.steps;
  std::vector<int> prompt = L.tok.encode(prompt_text, true, false, /*parse_special=*/true);  // as llama-cli: <|im_start|> is a token
  require(int(prompt.size()) <= steps,
          "run: the prompt is " + std::to_string(prompt.size()) + " tokens, more than the " + std::to_string(steps) + " steps (-n)");
  LlamaSession s(*L.model, steps);
  Sampler sampler(c.vocab_size, o.temp, o.top_p,
                  o.seed >= 0 ? uint64_t(o.seed) : uint64_t(std::chrono::system_clock::now().time_since_epoch().count()));
  std::vector<float> logits(size_t(c.vocab_size));
  const auto t0 = Clock::now();
  s.forward(prompt.data(), int(prompt.size()), 0, logits.data());
  const double prefill_s = seconds_since(t0);
  for (size_t i = 1; i < prompt.size(); ++i) print_piece(L.tok.decode_piece(prompt[i - 1], prompt[i]));
  int pos = int(prompt.size()), token = prompt.back(), generated = 0;
  const auto t1 = Clock::now();
  while (true) {
    const int next = sampler.sample(logits.data());
    if (next == L.tok.bos_id()) break;  // llama2.c: BOS ends the sequence
    print_piece(L.tok.decode_piece(token, next));
    token = next;
    ++generated;
    if (pos >= steps) break;
    s.forward(&token, 1, pos++, logits.data());
  }
  const double decode_s = seconds_since(t1);
  std::printf("\n");
  std::fflush(stdout);
  if (o.m.json) {
    nlohmann::json j = {{"model", o.m.model}, {"weights", o.m.weights}, {"prompt_tokens", prompt.size()},
                        {"generated_tokens", generated}, {"prefill_tokens_per_s", double(prompt.size()) / prefill_s},
                        {"decode_tokens_per_s", generated > 1 ? (generated - 1) / decode_s : 0.0},
                        {"peak_rss_mib", peak_rss_mib()}};
    fmt::print(stderr, "{}\n", json_io::dump(j));
  } else {
    fmt::print(stderr, "tensorzip: {} prompt + {} generated tokens; prefill {:.1f} tok/s, decode {:.1f} tok/s; weights {} ({:.1f} MiB); peak RSS {:.0f} MiB\n",
               prompt.size(), generated, double(prompt.size()) / prefill_s, generated > 1 ? (generated - 1) / decode_s : 0.0,
               L.model->format_summary(), double(L.model->weight_bytes()) / (1 << 20), peak_rss_mib());
  }
}

// ------------------------------------------------------------------ eval

struct EvalOpts {
  ModelOpts m;
  std::string text, split, capture;
  int ctx = 0, stride = 0, max_docs = 0, decode_tokens = 32;
  int64_t capture_rows = 2048;
};

// Per-linear input rows, capped at `max_rows` per layer (the first rows seen are kept).
struct Capture {
  int64_t max_rows;
  std::map<std::string, std::pair<int64_t, std::vector<float>>> rows;  // name -> (in, data)
  void add(const std::string& name, const float* x, int64_t n, int64_t in) {
    auto& [width, v] = rows[name];
    width = in;
    const int64_t have = int64_t(v.size()) / in, take = std::min(n, max_rows - have);
    if (take > 0) v.insert(v.end(), x, x + take * in);
  }
};


std::string unescape(const std::string& s) {  // "\n" in a command-line argument
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == 't')) {
      o += s[i + 1] == 'n' ? '\n' : '\t';
      ++i;
    } else {
      o += s[i];
    }
  }
  return o;
}

void run_eval(const EvalOpts& o) {
  if (!o.capture.empty()) {  // before any work: the output must be writable and not an input
    io::require_output_path(o.capture);
    io::require_output_not_input(o.capture, model_inputs(o.m.model, {o.m.tokenizer, o.text, o.m.lora}), "eval --capture");
  }
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  const int ctx = o.ctx > 0 ? std::min(o.ctx, c.seq_len) : c.seq_len;
  require(c.seq_len >= 2, "eval: " + o.m.model + ": the model's context (seq_len " + std::to_string(c.seq_len) +
                              ") is shorter than the 2 tokens perplexity needs");
  require(ctx >= 2, "eval: --ctx must be at least 2");
  const std::string text = io::read_text_file(o.text);
  // Sequences to score: each document (BOS + text, truncated to ctx) with --split, else the whole
  // text as one token stream scored with a sliding window.
  std::vector<std::vector<int>> docs;
  if (!o.split.empty()) docs = split_documents(text, L.tok, unescape(o.split), o.max_docs, ctx);
  else docs.push_back(L.tok.encode(text, true));
  require(!docs.empty() && docs[0].size() >= 2, o.text + ": no text to evaluate");
  const int stride = o.stride > 0 ? std::min(o.stride, ctx) : std::max(1, ctx / 2);
  Capture cap{o.capture_rows, {}};
  LlamaSession s(*L.model, ctx);
  if (!o.capture.empty()) s.set_activation_hook([&](const std::string& name, const float* x, int64_t n, int64_t in) { cap.add(name, x, n, in); });
  std::unique_ptr<Progress> bar;
  const PerplexityResult pr = evaluate_perplexity(s, docs, ctx, stride, [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>(int(total), !o.m.json);
    bar->step("window " + std::to_string(done));
  });
  if (bar) bar->done();
  s.set_activation_hook(nullptr);
  // Decode speed: greedy single-token steps after a one-token prompt.
  double decode_tps = 0;
  const int dn = std::min(o.decode_tokens, ctx - 1);
  if (dn > 0) {
    LlamaSession ds(*L.model, dn + 1);
    std::vector<float> lg(size_t(c.vocab_size));
    int tok = L.tok.bos_id();
    ds.forward(&tok, 1, 0, lg.data());
    const auto t0 = Clock::now();
    for (int p = 1; p <= dn; ++p) {
      tok = int(std::max_element(lg.begin(), lg.end()) - lg.begin());
      ds.forward(&tok, 1, p, lg.data());
    }
    decode_tps = dn / seconds_since(t0);
  }
  if (!o.capture.empty()) {
    io::SafetensorsWriter wr;
    std::vector<Tensor> keep;
    for (auto& [name, wv] : cap.rows) {
      auto& [in, v] = wv;
      keep.push_back(Tensor::view(DType::F32, {int64_t(v.size()) / in, in}, v.data()));
      wr.add(name, keep.back());
    }
    wr.set_metadata("tensorzip.capture", "inputs of each linear layer, rows = tokens (first " + std::to_string(o.capture_rows) + ")");
    wr.set_metadata("tensorzip.model", o.m.model);
    wr.set_metadata("tensorzip.text", o.text);
    wr.write(o.capture);
  }
  const double mean_nll = pr.mean_nll, ppl = pr.perplexity(), prefill_tps = double(pr.processed) / pr.forward_s;
  const int64_t scored = pr.scored, windows = pr.windows;
  if (o.m.json) {
    nlohmann::json j = {{"model", o.m.model}, {"weights", o.m.weights}, {"text", o.text}, {"ctx", ctx},
                        {"documents", docs.size()}, {"windows", windows}, {"tokens_scored", scored},
                        {"mean_nll", mean_nll}, {"perplexity", ppl}, {"prefill_tokens_per_s", prefill_tps},
                        {"decode_tokens_per_s", decode_tps}, {"weight_bytes", L.model->weight_bytes()},
                        {"peak_rss_mib", peak_rss_mib()}, {"load_s", L.load_s}};
    fmt::print("{}\n", json_io::dump(j));
  } else {
    fmt::print("model        {} ({})\n", o.m.model, c.to_string());
    fmt::print("weights      {} ({:.2f} MiB)\n", L.model->format_summary(), double(L.model->weight_bytes()) / (1 << 20));
    fmt::print("text         {}: {} documents, {} windows of <= {} tokens, {} tokens scored\n", o.text, docs.size(), windows, ctx, scored);
    fmt::print("perplexity   {:.4f} (mean NLL {:.4f} nats/token)\n", ppl, mean_nll);
    fmt::print("speed        prefill {:.1f} tok/s, decode {:.1f} tok/s\n", prefill_tps, decode_tps);
    fmt::print("memory       peak RSS {:.1f} MiB\n", peak_rss_mib());
  }
}

}  // namespace

void add_run(CLI::App& app) {
  auto o = std::make_shared<RunOpts>();
  auto* c = app.add_subcommand("run", "Generate text from a LLaMA-architecture model (llama2.c's run: echo the prompt, stream the continuation)");
  add_model_options(c, o->m);
  c->add_option("-p,--prompt", o->prompt, "Prompt (default: start from BOS)");
  c->add_option("-f,--file", o->prompt_file, "Read the prompt from this file (for prompts longer than a command line)");
  c->add_option("-n,--steps", o->steps, "Positions to run, prompt included (0 or > seq_len: seq_len)")->capture_default_str();
  c->add_option("-t,--temp", o->temp, "Temperature (0: greedy)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-p", o->top_p, "Nucleus sampling threshold")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c->add_option("-s,--seed", o->seed, "Random seed (default: time)");
  c->add_flag("--json", o->m.json, "Statistics as JSON on stderr");
  c->callback([o] { run_generate(*o); });
}

void add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOpts>();
  auto* c = app.add_subcommand("eval", "Perplexity, prefill/decode tokens/s and peak memory of a model on a text");
  add_model_options(c, o->m);
  c->add_option("--text", o->text, "Evaluation text file")->required();
  c->add_option("--ctx", o->ctx, "Context window (default: the model's seq_len)");
  c->add_option("--stride", o->stride, "Sliding-window stride (default: ctx/2; each token is scored once)");
  c->add_option("--split", o->split, "Score documents separated by this string (e.g. '\\n\\n'), each as BOS + text truncated to ctx");
  c->add_option("--max-docs", o->max_docs, "With --split: only the first N non-empty documents");
  c->add_option("--decode-tokens", o->decode_tokens, "Greedy decode steps timed for decode tokens/s")->capture_default_str();
  c->add_option("--capture", o->capture, "Write each linear layer's input activations to this safetensors file (calibration)");
  c->add_option("--capture-rows", o->capture_rows, "Rows (tokens) kept per layer in --capture")->capture_default_str()->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  c->add_flag("--json", o->m.json, "One JSON object (key perplexity, ...)");
  c->callback([o] { run_eval(*o); });
}

}  // namespace tz::cli
