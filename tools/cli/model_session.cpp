// Shared by run, eval and chat (see model_session.h).
#include "tools/cli/model_session.h"

#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "tensorzip/chat.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"
#include "tools/cli/progress.h"

namespace tz::cli {

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

void add_model_options(CLI::App* c, ModelOpts& o) {
  c->add_option("-m,--model", o.model, "Model: llama2.c .bin, GGUF (llama, qwen2, qwen3, phi3, gemma2, olmo2), a Hugging Face directory or a tensorzip file")->required();
  c->add_option("-z,--tokenizer", o.tokenizer,
                "Tokenizer (llama2.c tokenizer.bin or tokenizer.json; default: the one inside the model, else tokenizer.bin beside it)");
  c->add_option("--weights", o.weights,
                "Weight format of the linear layers: native (as stored: every GGUF quantized type runs on its own llama.cpp blocks, f16/bf16 in f32), f32, bf16, q1..q8[gG][a], t; overrides by name, e.g. q4,output=q8,layers.0.*=f32")
      ->capture_default_str();
  c->add_option("--lora", o.lora,
                "A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), applied unmerged; DIR:SCALE "
                "scales it (llama.cpp's --lora-scaled); repeat for several");
}

std::pair<std::string, float> lora_arg(const std::string& arg) {
  const size_t colon = arg.rfind(':');
  if (colon == std::string::npos || std::filesystem::is_directory(arg)) return {arg, 1.f};
  const std::string num = arg.substr(colon + 1);
  char* end = nullptr;
  const float s = std::strtof(num.c_str(), &end);
  require(!num.empty() && *end == '\0' && std::isfinite(s), "--lora " + arg + ": '" + num + "' after the last ':' is not a scale");
  return {arg.substr(0, colon), s};
}

Tokenizer tokenizer_from_path(const std::string& path, int vocab_size) {
  const bool json = path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  return json ? Tokenizer::from_hf_json(path) : Tokenizer::from_llama2c(path, vocab_size);
}

Loaded load(const ModelOpts& o, bool need_tokenizer) {
  const auto t0 = Clock::now();
  Loaded L{load_llama(o.model), Tokenizer(), nullptr, 0};
  if (need_tokenizer) {
    if (o.tokenizer.empty()) {
      L.tok = default_tokenizer(L.src, o.model);
    } else {
      L.tok = tokenizer_from_path(o.tokenizer, L.src.cfg.vocab_size);
    }
    require(L.tok.vocab_size() >= L.src.cfg.vocab_size || L.tok.vocab_size() == L.src.cfg.vocab_size,
            L.tok.label() + ": tokenizer has " + std::to_string(L.tok.vocab_size()) + " tokens, the model " +
                std::to_string(L.src.cfg.vocab_size));
  }
  const FormatSpec spec(o.weights);
  Progress bar(L.src.cfg.n_layers * 7 + 1, !o.json && o.weights != "f32" && o.weights != "native");
  L.model = std::make_unique<LlamaModel>(L.src, spec, [&](int i, int) { bar.step("packing weights " + std::to_string(i)); });
  bar.done();
  for (const auto& arg : o.lora) {
    const auto [dir, scale] = lora_arg(arg);
    L.model->attach_lora(read_peft_adapter(dir), scale, &L.src);
  }
  L.load_s = seconds_since(t0);
  return L;
}

void print_piece(const std::string& p) {
  if (p.empty()) return;
  if (p.size() == 1 && !(std::isprint(static_cast<unsigned char>(p[0])) || std::isspace(static_cast<unsigned char>(p[0]))))
    return;
  std::fwrite(p.data(), 1, p.size(), stdout);
  std::fflush(stdout);
}

void add_sample_options(CLI::App* c, SampleOpts& o) {
  c->add_option("--temp", o.temp, "Temperature (0: greedy)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", o.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  c->add_option("--top-p", o.top_p, "Nucleus sampling threshold")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c->add_option("--min-p", o.min_p, "Drop tokens below this fraction of the top probability (0: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c->add_option("--repeat-penalty", o.repeat_penalty, "Penalty on tokens of the last --repeat-last-n (1: off)")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  c->add_option("--repeat-last-n", o.repeat_last_n, "Tokens the repeat penalty looks back over")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("-s,--seed", o.seed, "Random seed (default: time)");
}

Sampler make_sampler(const SampleOpts& o, int vocab) {
  Sampler s(vocab, o.temp, o.top_p, o.seed >= 0 ? uint64_t(o.seed) : uint64_t(std::chrono::system_clock::now().time_since_epoch().count()));
  s.set_top_k(o.top_k);
  s.set_min_p(o.min_p);
  return s;
}

namespace {
// Text held back from printing: it may be the start of a stop string.
size_t stop_prefix_len(const std::string& text, const std::vector<std::string>& stops) {
  size_t keep = 0;
  for (const auto& s : stops)
    for (size_t k = std::min(s.size() - 1, text.size()); k > keep; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  return keep;
}
}  // namespace

bool ReplyText::push(int next, std::string& shown) {
  shown.clear();
  const std::string& piece = tok_.piece(next);
  if (!lim_.ignore_eos && (next == tok_.eos_id() || (lim_.stop_at_bos && next == tok_.bos_id()) ||
                           std::find(lim_.stop_pieces.begin(), lim_.stop_pieces.end(), piece) != lim_.stop_pieces.end())) {
    stop_ = "eos";
    return false;
  }
  const std::string text = tok_.decode_piece(prev_, next);
  prev_ = next;
  sampled_ += text;
  pending_ += text;
  size_t cut = std::string::npos;
  for (const auto& st : lim_.stop_strings) cut = std::min(cut, pending_.find(st));
  if (cut != std::string::npos) {
    shown = pending_.substr(0, cut);
    pending_.clear();
    stop_ = "stop";
    return false;
  }
  const size_t n = pending_.size() - stop_prefix_len(pending_, lim_.stop_strings);
  shown = pending_.substr(0, n);
  pending_.erase(0, n);
  return true;
}

std::string ReplyText::flush() {
  std::string t;
  t.swap(pending_);
  return t;
}

Reply generate_reply(LlamaSession& s, const Tokenizer& tok, Sampler& sampler, const SampleOpts& so, std::vector<float>& logits,
                     int& pos, std::vector<int>& history, const ReplyLimits& lim) {
  Reply r;
  const auto t0 = Clock::now();
  ReplyText text(tok, history.empty() ? tok.bos_id() : history.back(), lim);
  const auto emit = [&](const std::string& t) {
    if (lim.stream) print_piece(t);
    r.text += t;
  };
  std::string shown;
  while (true) {
    if (lim.interrupt && *lim.interrupt) {
      r.stop = "interrupt";
      break;
    }
    if (r.tokens >= lim.max_tokens) break;
    if (so.repeat_penalty != 1.f)  // llama.cpp's rule: shrink a repeated token's logit towards "less likely"
      for (size_t i = history.size() > size_t(so.repeat_last_n) ? history.size() - size_t(so.repeat_last_n) : 0; i < history.size(); ++i) {
        float& l = logits[size_t(history[i])];
        l = l > 0 ? l / so.repeat_penalty : l * so.repeat_penalty;
      }
    const int next = sampler.sample(logits.data());
    const bool more = text.push(next, shown);
    emit(shown);
    if (!more) {
      r.stop = text.stop();
      if (r.stop == "stop") ++r.tokens, history.push_back(next);  // the token that completed the stop string was sampled
      break;
    }
    ++r.tokens;
    history.push_back(next);
    require(pos < s.max_seq(), "the context of " + std::to_string(s.max_seq()) + " tokens is full (--ctx-size, or /reset)");
    s.forward(&next, 1, pos++, logits.data());
  }
  if (r.stop != "stop") emit(text.flush());
  r.sampled = text.sampled();
  r.seconds = seconds_since(t0);
  return r;
}

int context_size(int flag, const LlamaConfig& c) { return flag > 0 ? std::min(flag, c.seq_len) : std::min(c.seq_len, 4096); }

std::string choose_chat_format(const std::string& flag, const LlamaSource& src) {
  if (!flag.empty()) {
    const std::string name = detect_chat_template(flag);
    require(!name.empty(), "--chat-template '" + flag + "' is not a built-in format (chatml, llama2, llama3, gemma, phi3, mistral-v7, …)");
    return name;
  }
  require(!src.chat_template.empty(), src.label + ": the model has no chat template; pass --chat-template NAME (chatml, llama3, gemma, phi3, …)");
  const std::string name = detect_chat_template(src.chat_template);
  require(!name.empty(), src.label + ": its chat template matches no built-in format; pass --chat-template NAME");
  return name;
}

}  // namespace tz::cli
