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
#include "tensorzip/chat.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/runtime.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/model_session.h"
#include "tools/cli/progress.h"

namespace tz::cli {
namespace {

// ------------------------------------------------------------------ run

struct RunOpts {
  ModelOpts m;
  std::string prompt, prompt_file, chat_template, system;
  int steps = 256;
  bool chat = false;
  // llama2.c's sampling by default (temperature 1, top-p 0.9, no top-k / min-p): same seed, same draw.
  SampleOpts sample{1.0f, 0.9f, 0.f, 1.f, 0, 64, -1};
};

// `run --chat`: the prompt as one user turn in the model's chat format; only the reply is printed.
void run_chat_once(const RunOpts& o, const std::string& prompt_text) {
  Loaded L = load(o.m);
  const std::string format = choose_chat_format(o.chat_template, L.src);
  std::vector<ChatMessage> msgs;
  if (!o.system.empty()) msgs.push_back({"system", o.system});
  msgs.push_back({"user", prompt_text});
  const std::vector<int> ids = L.tok.encode(apply_chat_template(format, msgs, true), true, false, /*parse_special=*/true);
  const LlamaConfig& c = L.model->config();
  const int ctx = std::min(c.seq_len, int(ids.size()) + std::max(o.steps, 1));
  require(int(ids.size()) < ctx, "run --chat: the prompt is " + std::to_string(ids.size()) + " tokens, the context " + std::to_string(ctx));
  LlamaSession s(*L.model, ctx);
  std::vector<float> logits(size_t(c.vocab_size));
  const auto t0 = Clock::now();
  s.forward(ids.data(), int(ids.size()), 0, logits.data());
  const double prefill_s = seconds_since(t0);
  int pos = int(ids.size());
  std::vector<int> history = ids;
  Sampler sampler = make_sampler(o.sample, c.vocab_size);
  const Reply r = generate_reply(s, L.tok, sampler, o.sample, logits, pos, ctx - pos, chat_stop_strings(format), history);
  std::printf("\n");
  std::fflush(stdout);
  fmt::print(stderr, "tensorzip: format {}, {} prompt + {} reply tokens{}; prefill {:.1f} tok/s, decode {:.1f} tok/s\n", format, ids.size(),
             r.tokens, r.ended ? "" : " (limit reached)", double(ids.size()) / prefill_s, r.seconds > 0 ? r.tokens / r.seconds : 0.0);
}

void run_generate(const RunOpts& o) {
  require(o.prompt.empty() || o.prompt_file.empty(), "run: give the prompt with -p or -f, not both");
  const std::string prompt_text = o.prompt_file.empty() ? o.prompt : io::read_text_file(o.prompt_file);
  if (o.chat) return run_chat_once(o, prompt_text);
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  int steps = o.steps <= 0 || o.steps > c.seq_len ? c.seq_len : o.steps;
  std::vector<int> prompt = L.tok.encode(prompt_text, true, false, /*parse_special=*/true);  // as llama-cli: <|im_start|> is a token
  require(int(prompt.size()) <= steps,
          "run: the prompt is " + std::to_string(prompt.size()) + " tokens, more than the " + std::to_string(steps) + " steps (-n)");
  LlamaSession s(*L.model, steps);
  Sampler sampler = make_sampler(o.sample, c.vocab_size);
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
  add_sample_options(c, o->sample);
  c->add_flag("--chat", o->chat, "Treat the prompt as a user turn in the model's chat format; print only the reply");
  c->add_option("--chat-template", o->chat_template, "With --chat: the format by name (chatml, llama3, gemma, …); default: the model's");
  c->add_option("--system", o->system, "With --chat: a system message");
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
