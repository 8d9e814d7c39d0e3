// `tensorzip bench serve`: the serving engine under load. C clients (threads), each sending R
// requests one after another, each request on a random one of A LoRA adapters, a prompt of P
// random tokens and G generated tokens (EOS ignored, so every request has the same length).
// Reported per client count: aggregate generated tokens/s, p50/p99 time to first token and
// inter-token latency; with the same requests in the same run: one at a time (1 client, one
// sequence per step) and with the adapters' loop kernel instead of the fused one (same batching).
// The engine is driven in-process (tokens in, tokens out): HTTP and JSON are not timed.
#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/json.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/runtime.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/model_session.h"
#include "tools/cli/serve_engine.h"

namespace tz::cli {
namespace {

struct BenchServeOpts {
  std::string model, synthetic = "7b:2", weights = "q4g128", tokenizer;
  std::vector<int> clients = {1, 4, 16, 32};
  int adapters = 32, rank = 16, requests = 4, prompt = 32, generate = 32;
  bool json = false, no_loop = false;
};

// A llama2.c vocabulary of `vocab` pieces (<unk> <s> </s>, the 256 byte pieces, then "w0", "w1", …):
// the engine turns tokens into text, and random weights need no real vocabulary.
Tokenizer synthetic_tokenizer(int vocab) {
  std::vector<uint8_t> bin;
  const auto put = [&](const void* p, size_t n) { bin.insert(bin.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  const int32_t max_len = 16;
  put(&max_len, 4);
  for (int i = 0; i < vocab; ++i) {
    const std::string piece = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : i < 259 ? fmt::format("<0x{:02X}>", i - 3) : fmt::format("w{}", i);
    const float score = -float(i);
    const int32_t len = int32_t(piece.size());
    put(&score, 4);
    put(&len, 4);
    put(piece.data(), piece.size());
  }
  return Tokenizer::parse_llama2c(bin.data(), bin.size(), "synthetic vocabulary", vocab);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

struct LoadResult {
  double seconds = 0, tokens_per_s = 0, ttft_p50 = 0, ttft_p99 = 0, itl_p50 = 0, itl_p99 = 0;
  int64_t tokens = 0, failed = 0;
};

// `clients` threads, each sending `requests` requests in turn through a fresh engine.
LoadResult run_load(const LlamaModel& model, const Tokenizer& tok, const LlamaAdapterSet& set, const BenchServeOpts& o, int clients,
                    int parallel) {
  Engine::Options eo;
  eo.parallel = parallel;
  eo.ctx = o.prompt + o.generate + 1;
  eo.queue = clients * o.requests + 1;
  Engine engine(model, tok, &set, eo);
  const int V = model.config().vocab_size;
  std::mutex mu;
  std::vector<double> ttft, itl;
  LoadResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng(uint32_t(1000 + c));
      for (int q = 0; q < o.requests; ++q) {
        std::vector<int> prompt(size_t(o.prompt));
        for (int& t : prompt) t = int(rng() % uint32_t(V));
        GenerationParams p;
        p.max_tokens = o.generate;
        p.temperature = 0;
        p.limits.ignore_eos = true;
        const int32_t adapter = set.size() > 0 ? int32_t(rng() % uint32_t(set.size())) : -1;
        const auto start = std::chrono::steady_clock::now();
        auto job = engine.submit(prompt, adapter, p);
        std::vector<double> mine_itl;
        double first = -1, last = 0;
        JobEvent e;
        while (true) {
          if (!job->next(e, std::chrono::milliseconds(1000))) continue;
          const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          if (first < 0) first = t;
          else mine_itl.push_back(t - last);
          last = t;
          if (e.done) break;
        }
        std::lock_guard<std::mutex> lock(mu);
        if (e.finish_reason != "length") ++r.failed;
        r.tokens += e.completion_tokens;
        ttft.push_back(first);
        itl.insert(itl.end(), mine_itl.begin(), mine_itl.end());
      }
    });
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = double(r.tokens) / r.seconds;
  r.ttft_p50 = percentile(ttft, 0.5);
  r.ttft_p99 = percentile(ttft, 0.99);
  r.itl_p50 = percentile(itl, 0.5);
  r.itl_p99 = percentile(itl, 0.99);
  return r;
}

void run_bench_serve(const BenchServeOpts& o) {
  LlamaSource src;
  std::optional<Tokenizer> tok;
  if (!o.model.empty()) {
    src = load_llama(o.model);
    tok = o.tokenizer.empty() ? default_tokenizer(src, o.model) : tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
  } else {
    int layers = 0;
    require(std::sscanf(o.synthetic.c_str(), "7b:%d", &layers) == 1 && layers > 0, "bench serve: --synthetic takes 7b:LAYERS");
    src = synthetic_llama(llama2_7b_config(layers));
    tok = o.tokenizer.empty() ? synthetic_tokenizer(src.cfg.vocab_size) : tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
  }
  const std::string weights = o.model.empty() ? o.weights : (o.weights == "q4g128" ? "native" : o.weights);
  const LlamaModel model(src, FormatSpec(weights));
  const LlamaConfig& c = model.config();
  // Random adapters on q and v of every layer (S-LoRA's setting), rank `rank`.
  LlamaAdapterSet set(model);
  for (int a = 0; a < o.adapters; ++a) {
    PeftAdapter ad;
    ad.r = o.rank;
    ad.lora_alpha = 2.0 * o.rank;
    for (int l = 0; l < c.n_layers; ++l)
      for (const auto& [name, out] : {std::pair{"q_proj", c.q_dim()}, std::pair{"v_proj", c.kv_dim()}}) {
        LoraAdapter la;
        la.rank = o.rank;
        la.alpha = float(2 * o.rank);
        std::mt19937 rng(uint32_t(a * 7919 + l * 31 + out));
        std::normal_distribution<float> nd(0.f, 0.02f);
        la.a.resize(size_t(o.rank) * size_t(c.dim));
        la.b.resize(size_t(out) * size_t(o.rank));
        for (float& v : la.a) v = nd(rng);
        for (float& v : la.b) v = nd(rng);
        ad.modules["model.layers." + std::to_string(l) + ".self_attn." + name] = std::move(la);
      }
    set.add(ad);
  }
  const std::string what = o.model.empty() ? fmt::format("synthetic LLaMA-2-7B shapes, {} layers, {}", c.n_layers, weights)
                                           : fmt::format("{} ({})", o.model, weights);
  nlohmann::json rows = nlohmann::json::array();
  if (!o.json)
    fmt::print("bench serve: {}; {} adapters of rank {} on q,v; {} requests per client, prompt {} + {} generated tokens; {} threads\n", what,
               o.adapters, o.rank, o.requests, o.prompt, o.generate, num_threads());
  if (!o.json)
    fmt::print("{:>7} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>9}\n", "clients", "mode", "tokens/s", "x 1-by-1", "ttft p50",
               "ttft p99", "itl p50", "itl p99", "fused/loop", "failed");
  for (int n : o.clients) {
    // The same requests one at a time (one sequence per step), then batched with each adapter kernel.
    set.set_fused(true);
    const LoadResult one = run_load(model, *tok, set, o, n, 1);
    const LoadResult fused = run_load(model, *tok, set, o, n, std::max(1, n));
    LoadResult loop;
    if (!o.no_loop) {
      set.set_fused(false);
      loop = run_load(model, *tok, set, o, n, std::max(1, n));
      set.set_fused(true);
    }
    const auto row = [&](const char* mode, const LoadResult& r) {
      const double x = r.tokens_per_s / one.tokens_per_s, fl = o.no_loop ? 0 : fused.tokens_per_s / loop.tokens_per_s;
      if (o.json) {
        rows.push_back({{"clients", n}, {"mode", mode}, {"tokens_per_s", r.tokens_per_s}, {"ratio_to_one_at_a_time", x},
                        {"ttft_p50_s", r.ttft_p50}, {"ttft_p99_s", r.ttft_p99}, {"itl_p50_s", r.itl_p50}, {"itl_p99_s", r.itl_p99},
                        {"fused_over_loop", fl}, {"tokens", r.tokens}, {"seconds", r.seconds}, {"failed", r.failed}});
        return;
      }
      fmt::print("{:>7} {:>10} {:>12.1f} {:>9.2f} {:>8.1f}ms {:>8.1f}ms {:>8.1f}ms {:>8.1f}ms {:>12} {:>9}\n", n, mode, r.tokens_per_s, x,
                 r.ttft_p50 * 1e3, r.ttft_p99 * 1e3, r.itl_p50 * 1e3, r.itl_p99 * 1e3,
                 std::string(mode) == "batched" && !o.no_loop ? fmt::format("{:.2f}", fl) : "", r.failed);
    };
    row("1-by-1", one);
    row("batched", fused);
    if (!o.no_loop) row("loop", loop);
  }
  if (o.json)
    fmt::print("{}\n", json_io::dump(nlohmann::json{{"bench", "serve"}, {"model", what}, {"adapters", o.adapters}, {"rank", o.rank},
                                                    {"requests_per_client", o.requests}, {"prompt", o.prompt}, {"generate", o.generate},
                                                    {"threads", num_threads()}, {"rows", rows}}));
}

}  // namespace

void add_bench_serve(CLI::App& bench) {
  auto o = std::make_shared<BenchServeOpts>();
  auto* c = bench.add_subcommand("serve", "The serving engine under load: clients on random adapters, batched vs one at a time vs the adapter loop");
  c->add_option("-m,--model", o->model, "Model (default: --synthetic)");
  c->add_option("-z,--tokenizer", o->tokenizer, "Tokenizer for -m (default: the model's)");
  c->add_option("--synthetic", o->synthetic, "7b:LAYERS: LLaMA-2-7B layer shapes, random weights")->capture_default_str();
  c->add_option("--weights", o->weights, "Weight format (default q4g128 for --synthetic, native for -m)")->capture_default_str();
  c->add_option("--clients", o->clients, "Concurrent clients, e.g. 1,4,16,32")->delimiter(',')->check(CLI::Range(1, 1024));
  c->add_option("--adapters", o->adapters, "LoRA adapters (random, on q and v)")->capture_default_str()->check(CLI::Range(0, 4096));
  c->add_option("--rank", o->rank, "Adapter rank")->capture_default_str()->check(CLI::Range(1, 1024));
  c->add_option("--requests", o->requests, "Requests per client, one after another")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--prompt", o->prompt, "Prompt tokens per request")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--generate", o->generate, "Tokens generated per request")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_flag("--no-loop", o->no_loop, "Skip the adapter-loop baseline");
  c->add_flag("--json", o->json, "One JSON object on stdout");
  add_threads_option(c);
  c->callback([o] { run_bench_serve(*o); });
}

}  // namespace tz::cli
