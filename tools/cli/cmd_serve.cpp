// `tensorzip serve`: an OpenAI-compatible HTTP server (cpp-httplib) over the continuous-batching
// engine, every PEFT adapter of --lora-dir served beside the base model in the same batches.
// docs/serve.md.
#include <fmt/core.h>
#include <httplib.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/json.h"
#include "tensorzip/chat.h"
#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/model_session.h"
#include "tools/cli/serve_api.h"
#include "tools/cli/serve_engine.h"

namespace tz::cli {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }

struct ServeOpts {
  ModelOpts m;
  std::string lora_dir, host = "127.0.0.1", alias, chat_template;
  int port = 8080, parallel = 8, ctx = 0, queue = 64, http_threads = 0, drain_s = 30;
  double kv_budget_mib = 0;
};

struct Counters {
  std::mutex mu;
  std::map<std::pair<std::string, int>, uint64_t> responses;  // (endpoint, status) → count
  void add(const std::string& endpoint, int status) {
    std::lock_guard<std::mutex> lock(mu);
    ++responses[{endpoint, status}];
  }
};

void send_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_content(json_io::dump(j), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "") {
  send_json(res, status, error_body(message, status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error", param));
}

std::string prometheus(const EngineMetrics& m, Counters& c, size_t adapters) {
  std::ostringstream o;
  const auto counter = [&](const char* name, const char* help, double v) {
    o << "# HELP tensorzip_" << name << " " << help << "\n# TYPE tensorzip_" << name << " counter\ntensorzip_" << name << " " << v << "\n";
  };
  const auto gauge = [&](const char* name, const char* help, double v) {
    o << "# HELP tensorzip_" << name << " " << help << "\n# TYPE tensorzip_" << name << " gauge\ntensorzip_" << name << " " << v << "\n";
  };
  const auto histogram = [&](const char* name, const char* help, const EngineMetrics::Histogram& h) {
    o << "# HELP tensorzip_" << name << " " << help << "\n# TYPE tensorzip_" << name << " histogram\n";
    uint64_t cum = 0;
    for (size_t b = 0; b < std::size(EngineMetrics::kBuckets); ++b) {
      cum += h.counts[b];
      o << "tensorzip_" << name << "_bucket{le=\"" << EngineMetrics::kBuckets[b] << "\"} " << cum << "\n";
    }
    o << "tensorzip_" << name << "_bucket{le=\"+Inf\"} " << h.n << "\ntensorzip_" << name << "_sum " << h.sum << "\ntensorzip_" << name
      << "_count " << h.n << "\n";
  };
  {
    std::lock_guard<std::mutex> lock(c.mu);
    o << "# HELP tensorzip_http_responses_total HTTP responses by endpoint and status\n# TYPE tensorzip_http_responses_total counter\n";
    for (const auto& [k, v] : c.responses)
      o << "tensorzip_http_responses_total{endpoint=\"" << k.first << "\",status=\"" << k.second << "\"} " << v << "\n";
  }
  counter("requests_finished_total", "Generation requests finished (stop or length)", double(m.requests_finished));
  counter("requests_cancelled_total", "Generation requests cancelled (client gone, shutdown)", double(m.requests_cancelled));
  counter("prompt_tokens_total", "Prompt tokens prefilled", double(m.prompt_tokens));
  counter("generated_tokens_total", "Tokens generated", double(m.generated_tokens));
  counter("steps_total", "Scheduler steps (forward passes)", double(m.steps));
  counter("batch_rows_total", "Rows (tokens) run through forward passes", double(m.rows));
  gauge("queue_depth", "Requests waiting for a slot", m.queue_depth);
  gauge("active_sequences", "Sequences in the running batch", m.active);
  gauge("last_batch_sequences", "Sequences in the last forward pass", m.last_batch_sequences);
  gauge("last_batch_rows", "Rows in the last forward pass", m.last_batch_rows);
  gauge("kv_cache_bytes", "KV cache held by active sequences", double(m.kv_bytes));
  gauge("adapters", "LoRA adapters loaded", double(adapters));
  histogram("batch_sequences", "Sequences per forward pass", m.batch_sequences);
  histogram("time_to_first_token_seconds", "From request to its first token", m.time_to_first_token);
  histogram("inter_token_seconds", "Between a sequence's consecutive tokens", m.per_token);
  histogram("request_seconds", "From request to its last token", m.request_latency);
  return o.str();
}

void run_serve(const ServeOpts& o) {
  Loaded L = load(o.m);
  const LlamaConfig& c = L.model->config();
  const std::string base = o.alias.empty() ? fs::path(o.m.model).filename().string() : o.alias;
  // Adapters: every PEFT directory in --lora-dir, named by its folder.
  LlamaAdapterSet adapters(*L.model);
  std::map<std::string, int32_t> adapter_ids;  // name → id; guarded by names_mu once serving
  std::mutex names_mu;
  if (!o.lora_dir.empty()) {
    require(fs::is_directory(o.lora_dir), "serve: --lora-dir " + o.lora_dir + " is not a directory");
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(o.lora_dir))
      if (e.is_directory() && fs::exists(e.path() / "adapter_config.json")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      const std::string name = d.filename().string();
      require(name != base, "serve: adapter '" + name + "' has the base model's name");
      adapter_ids[name] = adapters.add(read_peft_adapter(d.string()));
    }
  }
  std::string chat_format;
  try {
    chat_format = choose_chat_format(o.chat_template, L.src);
  } catch (const Error&) {  // no template: chat requests get a clear 400
  }
  Engine::Options eo;
  eo.parallel = o.parallel;
  eo.ctx = context_size(o.ctx, c);
  eo.queue = o.queue;
  eo.kv_budget_bytes = size_t(o.kv_budget_mib * 1024 * 1024);
  Engine engine(*L.model, L.tok, &adapters, eo);
  Counters counters;
  httplib::Server svr;
  const int threads = o.http_threads > 0 ? o.http_threads : std::max(16, 2 * (o.parallel + o.queue / 4) + 4);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.set_payload_max_length(8 << 20);
  svr.set_read_timeout(30, 0);

  const auto created = [] { return int64_t(std::time(nullptr)); };
  std::atomic<uint64_t> next_id{1};
  // /v1/completions and /v1/chat/completions.
  const auto generate = [&](const httplib::Request& req, httplib::Response& res, bool chat) {
    const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
    try {
      if (!engine.accepting()) {
        send_error(res, 503, "the server is shutting down");
        return counters.add(endpoint, 503);
      }
      const CompletionRequest r = parse_completion_request(req.body, chat);
      GenerationParams p;
      p.temperature = r.temperature;
      p.top_p = r.top_p;
      p.seed = r.seed ? *r.seed : std::random_device{}();
      p.limits.stop_strings = r.stop;
      std::vector<int> prompt;
      if (chat) {
        if (chat_format.empty())
          throw RequestError("messages", "the model has no chat template; start the server with --chat-template NAME (chatml, llama3, …)");
        prompt = L.tok.encode(apply_chat_template(chat_format, r.messages, true), true, false, true);
        p.limits.stop_pieces = chat_stop_strings(chat_format);
      } else {
        prompt = L.tok.encode(r.prompt, true, false, true);
        p.limits.stop_pieces = end_of_turn_pieces(L.tok);
        p.limits.stop_at_bos = true;
      }
      if (int(prompt.size()) >= eo.ctx)
        throw RequestError(chat ? "messages" : "prompt", "the prompt is " + std::to_string(prompt.size()) + " tokens; the context holds " +
                                                             std::to_string(eo.ctx));
      p.max_tokens = r.max_tokens > 0 ? r.max_tokens : chat ? eo.ctx : 16;
      // The adapter is resolved and the request queued under names_mu (DELETE cannot unload it in
      // between); the prompt was tokenized before, outside the lock.
      std::unique_lock<std::mutex> names(names_mu);
      int32_t adapter = -1;
      if (!r.model.empty() && r.model != base) {
        const auto it = adapter_ids.find(r.model);
        if (it == adapter_ids.end()) throw RequestError("model", "model '" + r.model + "' is neither the base model '" + base + "' nor a loaded adapter");
        adapter = it->second;
      }
      std::shared_ptr<Job> job;
      try {
        job = engine.submit(prompt, adapter, p);
      } catch (const Engine::QueueFull&) {
        send_error(res, 429, "the request queue is full; retry later");
        return counters.add(endpoint, 429);
      }
      names.unlock();
      const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
      const std::string model_name = r.model.empty() ? base : r.model;
      const int64_t t = created();
      const auto usage = [](const JobEvent& e) {
        return Json{{"prompt_tokens", e.prompt_tokens}, {"completion_tokens", e.completion_tokens},
                    {"total_tokens", e.prompt_tokens + e.completion_tokens}};
      };
      const auto finish_reason = [](const JobEvent& e) { return e.finish_reason == "length" ? "length" : "stop"; };
      if (!r.stream) {
        std::string text;
        JobEvent e;
        while (true) {
          if (!job->next(e, std::chrono::milliseconds(1000))) continue;
          text += e.text;
          if (e.done) break;
        }
        if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
          send_error(res, 500, e.error.empty() ? "the request was cancelled" : e.error);
          return counters.add(endpoint, 500);
        }
        Json choice = {{"index", 0}, {"finish_reason", finish_reason(e)}, {"logprobs", Json()}};
        if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
        else choice["text"] = text;
        send_json(res, 200,
                  {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", t}, {"model", model_name},
                   {"choices", Json::array({choice})}, {"usage", usage(e)}});
        return counters.add(endpoint, 200);
      }
      // Server-sent events in OpenAI's chunk format, then "data: [DONE]".
      counters.add(endpoint, 200);
      const bool include_usage = r.include_usage;
      res.set_header("Cache-Control", "no-cache");
      auto first = std::make_shared<bool>(true);
      res.set_chunked_content_provider(
          "text/event-stream",
          [job, chat, id, model_name, t, include_usage, first, usage, finish_reason](size_t, httplib::DataSink& sink) {
            const auto send = [&](const Json& chunk) {
              const std::string line = "data: " + json_io::dump(chunk) + "\n\n";
              return sink.write(line.data(), line.size());
            };
            const auto chunk = [&](const Json& delta_or_text, const Json& reason) {
              Json choice = {{"index", 0}, {"finish_reason", reason}, {"logprobs", Json()}};
              if (chat) choice["delta"] = delta_or_text;
              else choice["text"] = delta_or_text;
              Json j = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", t}, {"model", model_name},
                        {"choices", Json::array({choice})}};
              if (include_usage) j["usage"] = Json();
              return j;
            };
            if (*first && chat) {  // the role first, as OpenAI's stream does
              *first = false;
              if (!send(chunk({{"role", "assistant"}, {"content", ""}}, Json()))) return job->cancel(), false;
            }
            JobEvent e;
            while (!job->next(e, std::chrono::milliseconds(200)))
              if (!sink.is_writable()) return job->cancel(), false;
            if (!e.text.empty() && !send(chunk(chat ? Json{{"content", e.text}} : Json(e.text), Json()))) return job->cancel(), false;
            if (!e.done) return true;
            if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
              send(error_body(e.error.empty() ? "cancelled" : e.error, "server_error"));
            } else {
              send(chunk(chat ? Json::object() : Json(""), finish_reason(e)));
              if (include_usage) {
                Json u = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", t}, {"model", model_name},
                          {"choices", Json::array()}, {"usage", usage(e)}};
                send(u);
              }
            }
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          },
          [job](bool success) {
            if (!success) job->cancel();
          });
    } catch (const RequestError& e) {
      send_error(res, 400, e.what(), e.param());
      counters.add(endpoint, 400);
    } catch (const Error& e) {
      send_error(res, 400, e.what());
      counters.add(endpoint, 400);
    }
  };
  svr.Post("/v1/completions", [&](const httplib::Request& q, httplib::Response& s) { generate(q, s, false); });
  svr.Post("/v1/chat/completions", [&](const httplib::Request& q, httplib::Response& s) { generate(q, s, true); });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> names(names_mu);
    Json data = Json::array({{{"id", base}, {"object", "model"}, {"created", created()}, {"owned_by", "tensorzip"}}});
    for (const auto& [name, id] : adapter_ids)
      data.push_back({{"id", name}, {"object", "model"}, {"created", created()}, {"owned_by", "tensorzip"}, {"parent", base}});
    send_json(res, 200, {{"object", "list"}, {"data", data}});
    counters.add("/v1/models", 200);
  });
  // Adapters at run time: POST {"name", "path"} (a PEFT directory inside --lora-dir) loads one;
  // DELETE /v1/adapters/NAME unloads it when no request uses it (409 while one does).
  svr.Post("/v1/adapters", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      if (o.lora_dir.empty()) {
        send_error(res, 403, "loading adapters at run time needs --lora-dir (the directory they are loaded from)");
        return counters.add("/v1/adapters", 403);
      }
      const Json j = json_io::parse(req.body, "request body");
      if (!j.is_object()) throw RequestError("", "the request body is not a JSON object");
      for (const auto& [k, v] : j.items())
        if (k != "name" && k != "path") throw RequestError(k, "unknown field '" + k + "'");
      if (!j.contains("name") || !j["name"].is_string()) throw RequestError("name", "'name' must be a string");
      const std::string name = j["name"];
      if (name.empty() || name.size() > 128 || name == base ||
          !std::all_of(name.begin(), name.end(), [](char ch) { return std::isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.'; }))
        throw RequestError("name", "'name' must be 1–128 characters of letters, digits, '-', '_', '.', and not the base model's");
      const std::string rel = j.contains("path") ? (j["path"].is_string() ? j["path"].get<std::string>() : throw RequestError("path", "'path' must be a string")) : name;
      // Only directories inside --lora-dir: a client must not make the server read arbitrary paths.
      std::error_code ec;
      const fs::path root = fs::weakly_canonical(o.lora_dir, ec), dir = fs::weakly_canonical(fs::path(o.lora_dir) / rel, ec);
      const auto [r_end, d_it] = std::mismatch(root.begin(), root.end(), dir.begin(), dir.end());
      if (ec || r_end != root.end() || dir == root || !fs::is_directory(dir))
        throw RequestError("path", "'path' must name an adapter directory inside --lora-dir");
      const PeftAdapter ad = read_peft_adapter(dir.string());  // (outside the locks: file reading)
      std::lock_guard<std::mutex> names(names_mu);
      if (adapter_ids.count(name)) {
        send_error(res, 409, "adapter '" + name + "' is already loaded", "name");
        return counters.add("/v1/adapters", 409);
      }
      int32_t id = -1;
      engine.between_steps([&] { id = adapters.add(ad); });
      adapter_ids[name] = id;
      send_json(res, 200, {{"id", name}, {"object", "model"}, {"created", created()}, {"owned_by", "tensorzip"}, {"parent", base}});
    } catch (const RequestError& e) {
      send_error(res, 400, e.what(), e.param());
    } catch (const Error& e) {
      send_error(res, 400, e.what());
    }
    counters.add("/v1/adapters", res.status);
  });
  svr.Delete(R"(/v1/adapters/([A-Za-z0-9._-]+))", [&](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    std::lock_guard<std::mutex> names(names_mu);
    const auto it = adapter_ids.find(name);
    if (it == adapter_ids.end()) {
      send_error(res, 404, "no adapter '" + name + "' is loaded", "name");
    } else if (engine.adapter_in_use(it->second)) {
      send_error(res, 409, "adapter '" + name + "' is in use by a running or queued request; retry when it finishes", "name");
    } else {
      engine.between_steps([&] { adapters.remove(it->second); });
      adapter_ids.erase(it);
      send_json(res, 200, {{"id", name}, {"object", "model"}, {"deleted", true}});
    }
    counters.add("/v1/adapters", res.status);
  });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    if (engine.accepting()) send_json(res, 200, {{"status", "ok"}});
    else send_json(res, 503, {{"status", "shutting down"}});
    counters.add("/health", res.status);
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    size_t n = 0;
    {
      std::lock_guard<std::mutex> names(names_mu);
      n = adapter_ids.size();
    }
    res.set_content(prometheus(engine.metrics(), counters, n), "text/plain; version=0.0.4");
  });
  svr.Post("/tokenize", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      const TokenizeRequest r = parse_tokenize_request(req.body);
      send_json(res, 200, {{"tokens", L.tok.encode(r.content, r.add_special, false, true)}});
    } catch (const RequestError& e) {
      send_error(res, 400, e.what(), e.param());
    }
    counters.add("/tokenize", res.status);
  });
  svr.Post("/detokenize", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      const std::vector<int> ids = parse_detokenize_request(req.body);
      std::string text;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] >= c.vocab_size) throw RequestError("tokens", "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
        text += L.tok.decode_piece(i == 0 ? L.tok.bos_id() : ids[i - 1], ids[i]);
      }
      send_json(res, 200, {{"content", text}});
    } catch (const RequestError& e) {
      send_error(res, 400, e.what(), e.param());
    }
    counters.add("/detokenize", res.status);
  });
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_error(res, res.status, res.status == 404 ? "no such endpoint" : "request failed");
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, what);
  });

  require(svr.bind_to_port(o.host, o.port), "serve: cannot listen on " + o.host + ":" + std::to_string(o.port));
  // SIGTERM / SIGINT: stop taking requests, drain the running ones (bounded), exit 0.
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread watcher([&] {
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fmt::print(stderr, "tensorzip serve: stopping (draining up to {} s)\n", o.drain_s);
    engine.shutdown(std::chrono::seconds(o.drain_s));
    svr.stop();
  });
  fmt::print(stderr, "tensorzip serve: {} ({}; {} adapter(s)) on http://{}:{}  parallel {}, context {}, queue {}\n", base,
             L.model->format_summary(), adapter_ids.size(), o.host, o.port, o.parallel, eo.ctx, o.queue);
  svr.listen_after_bind();
  g_stop = true;
  watcher.join();
}

}  // namespace

void add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOpts>();
  auto* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server: continuous batching, many LoRA adapters in one batch (docs/serve.md)");
  add_model_options(c, o->m);
  c->add_option("--lora-dir", o->lora_dir, "Directory of PEFT LoRA adapters (one folder each; the folder name is the model name clients ask for)");
  c->add_option("--host", o->host, "Address to bind (default loopback only)")->capture_default_str();
  c->add_option("--port", o->port, "Port")->capture_default_str()->check(CLI::Range(0, 65535));
  c->add_option("--parallel", o->parallel, "Sequences decoded together at most (-np)")->capture_default_str()->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", o->ctx, "Context per sequence (default: the model's, at most 4096)")->check(CLI::Range(0, 1 << 24));
  c->add_option("--queue", o->queue, "Requests waiting at most; more get HTTP 429")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("--kv-budget-mib", o->kv_budget_mib, "KV cache of all active sequences at most (each counted at its whole context; 0: no limit)")
      ->check(CLI::Range(0.0, 1e9));
  c->add_option("--alias", o->alias, "The base model's name in the API (default: the model path's file name)");
  c->add_option("--chat-template", o->chat_template, "Chat format for /v1/chat/completions (default: the model's template)");
  c->add_option("--http-threads", o->http_threads, "HTTP worker threads (default: enough for --parallel and the queue)")->check(CLI::Range(0, 4096));
  c->add_option("--drain-s", o->drain_s, "Seconds SIGTERM waits for running requests")->capture_default_str()->check(CLI::Range(0, 3600));
  add_threads_option(c);
  c->callback([o] { run_serve(*o); });
}

}  // namespace tz::cli
