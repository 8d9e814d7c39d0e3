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
  int n_predict = -1, ctx = 0;
  std::vector<std::string> stop;
  bool chat = false;
  // llama2.c's sampling by default (temperature 1, top-p 0.9, no top-k / min-p): same seed, same draw.
  SampleOpts sample{1.0f, 0.9f, 0.f, 1.f, 0, 64, -1};
};

// Tokens to generate after a prompt of `prompt` tokens: -n, or until the context is full (-n -1).
// The session holds the prompt and every generated token.
int session_tokens(const RunOpts& o, const LlamaConfig& c, size_t prompt, const char* what) {
  const int ctx = context_size(o.ctx, c);
  require(int(prompt) < ctx, std::string(what) + ": the prompt is " + std::to_string(prompt) + " tokens; the context (-c) holds " +
                                 std::to_string(ctx));
  return o.n_predict < 0 ? ctx : std::min<int64_t>(ctx, int64_t(prompt) + o.n_predict);
}

void print_run_summary(const RunOpts& o, const Loaded& L, const std::string& format, size_t prompt_tokens, const std::string& prompt_text,
                       const Reply& r, double prefill_s) {
  const double prefill_tps = double(prompt_tokens) / prefill_s, decode_tps = r.seconds > 0 ? r.tokens / r.seconds : 0.0;
  if (o.m.json) {  // one object on stdout (the text was not streamed)
    nlohmann::json j = {{"model", o.m.model}, {"weights", o.m.weights}, {"prompt", prompt_text}, {"text", r.text},
                        {"prompt_tokens", prompt_tokens}, {"generated_tokens", r.tokens}, {"stop", r.stop},
                        {"prefill_tokens_per_s", prefill_tps}, {"decode_tokens_per_s", decode_tps}, {"peak_rss_mib", peak_rss_mib()}};
    if (!format.empty()) j["chat_format"] = format;
    fmt::print("{}\n", json_io::dump(j));
    return;
  }
  std::printf("\n");
  std::fflush(stdout);
  fmt::print(stderr, "tensorzip: {}{} prompt + {} generated tokens ({}); prefill {:.1f} tok/s, decode {:.1f} tok/s; weights {} ({:.1f} MiB); peak RSS {:.0f} MiB\n",
             format.empty() ? "" : "format " + format + ", ", prompt_tokens, r.tokens,
             r.stop == "eos" ? "end of text" : r.stop == "stop" ? "stop string" : "limit", prefill_tps, decode_tps,
             L.model->format_summary(), double(L.model->weight_bytes()) / (1 << 20), peak_rss_mib());
}

void run_generate(const RunOpts& o) {
  require(o.prompt.empty() || o.prompt_file.empty(), "run: give the prompt with -p or -f, not both");
  const std::string prompt_text = o.prompt_file.empty() ? o.prompt : io::read_text_file(o.prompt_file);
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  // --chat: the prompt as one user turn in the model's chat format; only the reply is printed.
  std::string format;
  std::vector<ChatMessage> msgs;
  if (o.chat) {
    format = choose_chat_format(o.chat_template, L.src);
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", prompt_text});
  } else {
    require(o.chat_template.empty() && o.system.empty(), "run: --chat-template and --system need --chat");
  }
  // As llama-cli, special tokens written in the prompt (<|im_start|>) are tokens.
  const std::vector<int> prompt =
      L.tok.encode(o.chat ? apply_chat_template(format, msgs, true) : prompt_text, true, false, /*parse_special=*/true);
  const int tokens = session_tokens(o, c, prompt.size(), "run");
  LlamaSession s(*L.model, tokens);
  Sampler sampler = make_sampler(o.sample, c.vocab_size);
  std::vector<float> logits(size_t(c.vocab_size));
  const auto t0 = Clock::now();
  s.forward(prompt.data(), int(prompt.size()), 0, logits.data());
  const double prefill_s = seconds_since(t0);
  if (!o.chat && !o.m.json)  // llama2.c's run echoes the prompt
    for (size_t i = 1; i < prompt.size(); ++i) print_piece(L.tok.decode_piece(prompt[i - 1], prompt[i]));
  ReplyLimits lim;
  lim.max_tokens = tokens - int(prompt.size());
  // End of generation: EOS, the end-of-turn tokens of every format the vocabulary has, --stop.
  lim.stop_pieces = o.chat ? chat_stop_strings(format) : end_of_turn_pieces(L.tok);
  lim.stop_strings = o.stop;
  lim.stop_at_bos = !o.chat;
  lim.stream = !o.m.json;
  int pos = int(prompt.size());
  std::vector<int> history = prompt;
  const Reply r = generate_reply(s, L.tok, sampler, o.sample, logits, pos, history, lim);
  print_run_summary(o, L, format, prompt.size(), prompt_text, r, prefill_s);
}

// ------------------------------------------------------------------ eval

constexpr int kNoChunks = -2;

struct EvalOpts {
  ModelOpts m;
  std::string text, split, capture;
  int ctx = 0, stride = 0, max_docs = 0, decode_tokens = -1, capture_rows_given = 0;
  int chunks = kNoChunks;  // --chunks N: llama-perplexity's protocol over N chunks (-1: all)  // decode_tokens -1: 32, at most ctx - 1
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
    io::require_output_not_input(o.capture, model_inputs(o.m.model, [&] {
      std::vector<std::string> in = {o.m.tokenizer, o.text};
      for (const auto& l : o.m.lora) in.push_back(lora_arg(l).first);
      return in;
    }()), "eval --capture");
  }
  // Flags this run would ignore or cap are errors (llama-perplexity's habit of silently adjusting is not kept).
  require(o.max_docs == 0 || !o.split.empty(), "eval: --max-docs needs --split (it counts documents)");
  require(o.chunks == kNoChunks || (o.split.empty() && o.stride == 0), "eval: --chunks is its own protocol; it takes no --split or --stride");
  require(o.capture_rows_given == 0 || !o.capture.empty(), "eval: --capture-rows needs --capture");
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  require(o.ctx <= c.seq_len, "eval: -c/--ctx " + std::to_string(o.ctx) + " is longer than the model's context (seq_len " +
                                  std::to_string(c.seq_len) + ")");
  const int ctx = o.ctx > 0 ? o.ctx : c.seq_len;
  require(c.seq_len >= 2, "eval: " + o.m.model + ": the model's context (seq_len " + std::to_string(c.seq_len) +
                              ") is shorter than the 2 tokens perplexity needs");
  require(ctx >= 2, "eval: -c/--ctx must be at least 2");
  require(o.stride <= ctx, "eval: --stride " + std::to_string(o.stride) + " is longer than the context " + std::to_string(ctx));
  require(o.decode_tokens < ctx, "eval: --decode-tokens " + std::to_string(o.decode_tokens) + " does not fit the context " +
                                     std::to_string(ctx) + " (at most ctx - 1)");
  const std::string text = io::read_text_file(o.text);
  // Sequences to score: each document (BOS + text, truncated to ctx) with --split, else the whole
  // text as one token stream scored with a sliding window.
  std::vector<std::vector<int>> docs;
  if (o.chunks != kNoChunks) {
    docs = perplexity_chunks(L.tok.encode(text, true), ctx, L.tok.bos_id());
    if (o.chunks >= 0) {
      require(o.chunks <= int(docs.size()), "eval: --chunks " + std::to_string(o.chunks) + ": the text has " + std::to_string(docs.size()) +
                                                 " chunks of " + std::to_string(ctx) + " tokens");
      docs.resize(size_t(o.chunks));
    }
  }
  else if (!o.split.empty()) docs = split_documents(text, L.tok, unescape(o.split), o.max_docs, ctx);
  else docs.push_back(L.tok.encode(text, true));
  require(!docs.empty() && docs[0].size() >= 2, o.text + ": no text to evaluate");
  const int stride = o.stride > 0 ? std::min(o.stride, ctx) : std::max(1, ctx / 2);
  Capture cap{o.capture_rows, {}};
  LlamaSession s(*L.model, ctx);
  if (!o.capture.empty()) s.set_activation_hook([&](const std::string& name, const float* x, int64_t n, int64_t in) { cap.add(name, x, n, in); });
  // The running perplexity after each window, as llama-perplexity prints it: [1]5.1234,[2]…
  const PerplexityResult pr = evaluate_perplexity(s, docs, ctx, stride, [&](int64_t done, int64_t, const PerplexityResult& so_far) {
    if (o.m.json) return;
    fmt::print(stderr, "[{}]{:.4f},", done, so_far.perplexity());
    std::fflush(stderr);
  }, o.chunks != kNoChunks ? ctx / 2 + 1 : 1);
  if (!o.m.json) fmt::print(stderr, "\n");
  s.set_activation_hook(nullptr);
  // Decode speed: greedy single-token steps after a one-token prompt.
  double decode_tps = 0;
  const int dn = o.decode_tokens < 0 ? std::min(32, ctx - 1) : o.decode_tokens;
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
                        {"mean_nll", mean_nll}, {"perplexity", ppl}, {"perplexity_error", pr.perplexity_error()},
                        {"prefill_tokens_per_s", prefill_tps},
                        {"decode_tokens_per_s", decode_tps}, {"weight_bytes", L.model->weight_bytes()},
                        {"peak_rss_mib", peak_rss_mib()}, {"load_s", L.load_s}};
    fmt::print("{}\n", json_io::dump(j));
  } else {
    fmt::print("model        {} ({})\n", o.m.model, c.to_string());
    fmt::print("weights      {} ({:.2f} MiB)\n", L.model->format_summary(), double(L.model->weight_bytes()) / (1 << 20));
    fmt::print("text         {}: {} documents, {} windows of <= {} tokens, {} tokens scored\n", o.text, docs.size(), windows, ctx, scored);
    fmt::print("perplexity   {:.4f} +/- {:.5f} (mean NLL {:.4f} nats/token)\n", ppl, pr.perplexity_error(), mean_nll);
    fmt::print("speed        prefill {:.1f} tok/s, decode {:.1f} tok/s\n", prefill_tps, decode_tps);
    fmt::print("memory       peak RSS {:.1f} MiB\n", peak_rss_mib());
  }
}

}  // namespace

void add_run(CLI::App& app) {
  auto o = std::make_shared<RunOpts>();
  auto* c = app.add_subcommand("run", "Generate text from a model (echo the prompt, stream the continuation; flags as llama-cli)");
  add_model_options(c, o->m);
  c->add_option("-p,--prompt", o->prompt, "Prompt (default: start from BOS)");
  c->add_option("-f,--file", o->prompt_file, "Read the prompt from this file (for prompts longer than a command line)");
  c->add_option("-n,--n-predict", o->n_predict, "Tokens to generate, the prompt not counted (-1: until end of text or a full context)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 24));
  c->add_option("-c,--ctx-size", o->ctx, "Context in tokens, prompt included (default: the model's, at most 4096)")->check(CLI::Range(0, 1 << 24));
  c->add_option("--stop", o->stop, "Stop when the generated text contains this string (not printed; repeatable)");
  add_sample_options(c, o->sample);
  add_threads_option(c);
  add_gpu_layers_option(c);
  c->add_flag("--chat", o->chat, "Treat the prompt as a user turn in the model's chat format; print only the reply");
  c->add_option("--chat-template", o->chat_template, "With --chat: the format by name (chatml, llama3, gemma, …); default: the model's");
  c->add_option("--system", o->system, "With --chat: a system message");
  c->add_flag("--json", o->m.json, "One JSON object on stdout with the generated text and statistics (no streaming)");
  c->callback([o] { run_generate(*o); });
}

void add_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOpts>();
  auto* c = app.add_subcommand("eval", "Perplexity, prefill/decode tokens/s and peak memory of a model on a text");
  add_model_options(c, o->m);
  c->add_option("-f,--file,--text", o->text, "Evaluation text file")->required();
  c->add_option("-c,--ctx-size,--ctx", o->ctx, "Context window (default: the model's seq_len; longer is an error)")->check(CLI::Range(0, 1 << 24));
  c->add_option("--stride", o->stride, "Sliding-window stride (default: ctx/2; each token is scored once)")->check(CLI::Range(0, 1 << 24));
  c->add_option("--split", o->split, "Score documents separated by this string (e.g. '\\n\\n'), each as BOS + text truncated to ctx");
  c->add_option("--chunks", o->chunks,
                "llama-perplexity's protocol over the first N chunks (-1: all): the text cut into -c token chunks, each from BOS, "
                "the second half of each scored (llama-perplexity -c C --chunks N gives the same numbers)")
      ->check(CLI::Range(-1, 1 << 30));
  c->add_option("--max-docs", o->max_docs, "With --split: only the first N non-empty documents")->check(CLI::Range(0, 1 << 30));
  c->add_option("--decode-tokens", o->decode_tokens, "Greedy decode steps timed for decode tokens/s (default 32; at most ctx - 1)")
      ->check(CLI::Range(0, 1 << 24));
  c->add_option("--capture", o->capture, "Write each linear layer's input activations to this safetensors file (calibration)");
  c->add_option_function<int64_t>("--capture-rows", [o](const int64_t& v) { o->capture_rows = v, o->capture_rows_given = 1; },
                                  "Rows (tokens) kept per layer in --capture (default 2048)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  add_threads_option(c);
  add_gpu_layers_option(c);
  c->add_flag("--json", o->m.json, "One JSON object (key perplexity, ...)");
  c->callback([o] { run_eval(*o); });
}

}  // namespace tz::cli
