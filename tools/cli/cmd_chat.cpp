// `tensorzip chat`: an interactive conversation in the model's chat format (tensorzip/chat.h).
// Replies stream as they are sampled; the KV cache is kept between turns, so each turn runs only
// its new text; Ctrl-C stops the current reply (a second Ctrl-C, or one at the prompt, quits);
// /reset starts over; /exit or end of input quits.
#include <fmt/core.h>
#include <signal.h>

#include <iostream>

#include "tensorzip/chat.h"
#include "tensorzip/error.h"
#include "tools/cli/commands.h"
#include "tools/cli/model_session.h"

namespace tz::cli {
namespace {

volatile bool g_stop_reply = false;
extern "C" void on_sigint(int) {
  if (g_stop_reply) {  // a second Ctrl-C: quit
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
  }
  g_stop_reply = true;
}

struct ChatOpts {
  ModelOpts m;
  SampleOpts sample;
  std::string chat_template, system;
  std::vector<std::string> stop;
  int ctx = 0, max_reply = 1024;
};

void run_chat(const ChatOpts& o) {
  Loaded L = load(o.m);
  const std::string format = choose_chat_format(o.chat_template, L.src);
  const LlamaConfig& c = L.model->config();
  const int ctx = context_size(o.ctx, c);
  ReplyLimits lim;
  lim.max_tokens = o.max_reply;
  lim.stop_pieces = chat_stop_strings(format);
  lim.stop_strings = o.stop;
  lim.interrupt = &g_stop_reply;
  LlamaSession s(*L.model, ctx);
  Sampler sampler = make_sampler(o.sample, c.vocab_size);
  std::vector<ChatMessage> msgs;
  if (!o.system.empty()) msgs.push_back({"system", o.system});
  std::string fed;  // the text whose tokens the cache holds
  std::vector<int> history;
  std::vector<float> logits(size_t(c.vocab_size));
  int pos = 0;
  fmt::print(stderr, "tensorzip chat: {} ({}), format {}, context {} tokens. /reset starts over, /exit quits, Ctrl-C stops a reply.\n",
             o.m.model, L.model->format_summary(), format, ctx);
  for (std::string line;;) {
    fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      msgs.resize(o.system.empty() ? 0 : 1);
      fed.clear();
      history.clear();
      pos = 0;
      fmt::print(stderr, "(conversation reset)\n");
      continue;
    }
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    const std::string full = apply_chat_template(format, msgs, true);
    // Feed only what the cache lacks; if the format re-renders earlier turns differently, start over.
    const bool continues = !fed.empty() && full.compare(0, fed.size(), fed) == 0;
    if (!continues) {
      fed.clear();
      history.clear();
      pos = 0;
    }
    const std::vector<int> ids = L.tok.encode(std::string_view(full).substr(fed.size()), pos == 0, false, /*parse_special=*/true);
    require(pos + int(ids.size()) < ctx, "chat: the conversation exceeds the context of " + std::to_string(ctx) + " tokens (/reset)");
    s.forward(ids.data(), int(ids.size()), pos, logits.data());
    pos += int(ids.size());
    history.insert(history.end(), ids.begin(), ids.end());
    g_stop_reply = false;
    signal(SIGINT, on_sigint);
    const Reply r = generate_reply(s, L.tok, sampler, o.sample, logits, pos, history, lim);
    signal(SIGINT, SIG_DFL);
    std::printf("\n");
    std::fflush(stdout);
    if (g_stop_reply) fmt::print(stderr, "(stopped)\n");
    msgs.push_back({"assistant", r.text});
    // The cache holds the prompt and the reply's tokens; the format's end-of-turn text is fed
    // with the next turn, as the rendering of the conversation continues.
    fed = full + r.text;
    if (r.stop == "stop") fed.clear();  // the cache holds text past the stop string: the next turn starts over
    fmt::print(stderr, "[{} tokens, {:.1f} tok/s]\n", r.tokens, r.seconds > 0 ? r.tokens / r.seconds : 0.0);
  }
}

}  // namespace

void add_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOpts>();
  auto* c = app.add_subcommand("chat", "Talk to a chat model in its own format (streaming, multi-turn, KV cache kept between turns)");
  add_model_options(c, o->m);
  add_sample_options(c, o->sample);
  add_threads_option(c);
  add_gpu_layers_option(c);
  c->add_option("--stop", o->stop, "End a reply where its text contains this string (not printed; repeatable)");
  c->add_option("--chat-template", o->chat_template, "Chat format by name (chatml, llama3, gemma, phi3, mistral-v7, …) or template text; default: the model's");
  c->add_option("--system", o->system, "System message");
  c->add_option("-c,--ctx-size", o->ctx, "Context in tokens (default: the model's, at most 4096)")->check(CLI::Range(0, 1 << 24));
  c->add_option("-n,--n-predict", o->max_reply, "Most tokens per reply")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  c->callback([o] { run_chat(*o); });
}

}  // namespace tz::cli
