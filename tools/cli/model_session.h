// What `run`, `eval` and `chat` share: the model options (-m, -z, --weights, --lora), loading a
// model with its tokenizer, printing a token's text, timing and memory figures.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tensorzip/llama.h"
#include "tools/cli/cli_util.h"

namespace tz::cli {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double peak_rss_mib();

struct ModelOpts {
  std::string model, tokenizer, weights = "native";
  std::vector<std::string> lora;  // DIR or DIR:SCALE, in order
  bool json = false;
};
// "DIR" or "DIR:SCALE" (llama.cpp's --lora / --lora-scaled) → the directory and the scale.
std::pair<std::string, float> lora_arg(const std::string& arg);
void add_model_options(CLI::App* c, ModelOpts& o);

struct Loaded {
  LlamaSource src;
  Tokenizer tok;
  std::unique_ptr<LlamaModel> model;
  double load_s = 0;
};
Loaded load(const ModelOpts& o, bool need_tokenizer = true);
// A tokenizer named on the command line (-z): tokenizer.json, else llama2.c tokenizer.bin.
Tokenizer tokenizer_from_path(const std::string& path, int vocab_size);

// llama2.c's safe_printf: a lone byte that is neither printable nor whitespace is not printed.
void print_piece(const std::string& p);

// Sampling flags as llama-cli spells them (--temp --top-k --top-p --min-p --repeat-penalty --seed).
struct SampleOpts {
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.f;
  int top_k = 40, repeat_last_n = 64;
  int64_t seed = -1;
};
void add_sample_options(CLI::App* c, SampleOpts& o);
Sampler make_sampler(const SampleOpts& o, int vocab);

// One reply: tokens sampled after what the session holds (`logits` are the last position's),
// until EOS, a token whose text is one of `stop_pieces` (the format's end of turn; not printed,
// not kept in the cache), generated text containing one of `stop_strings` (--stop: the text from
// it on is not printed or returned), `max_tokens`, or `*interrupt` (Ctrl-C). Every other token is
// fed back, so `pos` and `history` (for the repeat penalty) advance.
struct ReplyLimits {
  int max_tokens = 0;
  std::vector<std::string> stop_pieces, stop_strings;
  bool stop_at_bos = false;  // llama2.c's run: BOS ends the sequence
  bool ignore_eos = false;   // EOS and the stop pieces are tokens like any other (benchmarks of fixed length)
  bool stream = true;        // print each piece to stdout as it is sampled
  const volatile bool* interrupt = nullptr;
};
struct Reply {
  std::string text;     // what was printed (up to a stop string)
  std::string sampled;  // every sampled token's text (the cache holds these tokens)
  int tokens = 0;
  std::string stop = "limit";  // "eos" (EOS / end of turn / BOS), "stop" (a stop string), "limit", "interrupt"
  bool ended() const { return stop == "eos" || stop == "stop"; }
  double seconds = 0;
};
Reply generate_reply(LlamaSession& s, const Tokenizer& tok, Sampler& sampler, const SampleOpts& so, std::vector<float>& logits,
                     int& pos, std::vector<int>& history, const ReplyLimits& limits);

// A reply's text as tokens arrive: EOS (and BOS when asked) and the stop pieces end it unprinted;
// a stop string cuts it (the text from it on is dropped); text that may be the start of a stop
// string is held back until it is not. generate_reply and the server share it.
class ReplyText {
 public:
  ReplyText(const Tokenizer& tok, int prev_token, const ReplyLimits& limits) : tok_(tok), lim_(limits), prev_(prev_token) {}
  // The sampled token: false when it ends the reply (stop() says how); `shown` gets the text that
  // may be shown now.
  bool push(int token, std::string& shown);
  std::string flush();  // the held-back text, when the reply ends for another reason
  const std::string& stop() const { return stop_; }  // "eos", "stop", or "" while running
  const std::string& sampled() const { return sampled_; }

 private:
  const Tokenizer& tok_;
  const ReplyLimits& lim_;
  int prev_;
  std::string pending_, sampled_, stop_;
};

// The context a session gets: -c when given (at most the model's), else the model's capped at
// 4096 (llama-cli's default) so a long-context model does not allocate its whole cache.
int context_size(int flag, const LlamaConfig& c);

// The chat format to use: --chat-template NAME, else the one the model's template text selects.
std::string choose_chat_format(const std::string& flag, const LlamaSource& src);

}  // namespace tz::cli
