// `tensorzip serve`'s engine: continuous batching. One scheduler thread runs one forward pass per
// step over every active sequence — new prompts' prefill chunks beside every running sequence's
// next token, each row through its own LoRA adapter (LlamaAdapterSet) — and sequences join and
// leave between steps. Requests wait in a bounded queue while the active set is full or the KV
// cache budget is spent; each request's text arrives as events (a Job's queue) that the HTTP
// handler streams or collects.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tools/cli/model_session.h"

namespace tz::cli {

struct GenerationParams {
  int max_tokens = 16;  // tokens to generate (the context may end it first)
  float temperature = 1.f, top_p = 1.f;
  uint64_t seed = 0;
  ReplyLimits limits;  // stop pieces, stop strings, stop_at_bos (max_tokens above, not limits')
};

// What a request sees: text as it becomes showable, then one final event.
struct JobEvent {
  std::string text;
  bool done = false;
  std::string finish_reason;  // "stop" (EOS, end of turn, a stop string), "length", "cancelled", "error"
  std::string error;
  int prompt_tokens = 0, completion_tokens = 0;
};

class Job {
 public:
  // The next event, waiting up to `timeout`; false when none arrived in time.
  bool next(JobEvent& e, std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }  // the client went away: the sequence is freed at the next step
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void push(JobEvent e);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
  std::atomic<bool> cancelled_{false};
  // The scheduler's state of the sequence.
  std::vector<int> prompt_;
  int32_t adapter_ = -1;
  GenerationParams params_;
  std::optional<Sampler> sampler_;
  std::unique_ptr<ReplyText> text_;
  KvCache cache_;
  int prefilled_ = 0, generated_ = 0, last_token_ = 0;
  std::chrono::steady_clock::time_point submitted_, last_event_;
  bool first_token_sent_ = false;
};

// Counters and histograms for GET /metrics (Prometheus text format).
struct EngineMetrics {
  static constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  struct Histogram {
    std::vector<uint64_t> counts = std::vector<uint64_t>(std::size(kBuckets) + 1, 0);
    double sum = 0;
    uint64_t n = 0;
    void add(double v);
  };
  uint64_t requests_finished = 0, requests_cancelled = 0, prompt_tokens = 0, generated_tokens = 0, steps = 0, rows = 0;
  int queue_depth = 0, active = 0, last_batch_sequences = 0, last_batch_rows = 0;
  size_t kv_bytes = 0;
  Histogram time_to_first_token, per_token, request_latency, batch_sequences;
};

class Engine {
 public:
  struct Options {
    int parallel = 8;               // sequences decoded together at most
    int ctx = 2048;                 // positions per sequence
    int queue = 64;                 // requests waiting at most (more: refused, HTTP 429)
    int prefill_chunk = 512;        // prompt tokens per sequence per step
    size_t kv_budget_bytes = 0;     // KV cache of all active sequences at most (0: no limit)
  };
  Engine(const LlamaModel& model, const Tokenizer& tok, const LlamaAdapterSet* adapters, Options o);
  ~Engine();
  // Queues a sequence; throws QueueFull when the queue is full, tz::Error when the prompt does not
  // fit the context.
  struct QueueFull : Error {
    QueueFull() : Error("the request queue is full") {}
  };
  std::shared_ptr<Job> submit(std::vector<int> prompt, int32_t adapter, GenerationParams p);
  // Stops taking requests, lets active and queued ones finish for up to `drain`, cancels the rest.
  void shutdown(std::chrono::milliseconds drain);
  EngineMetrics metrics() const;
  // Runs fn while no forward pass runs (between two steps): for changing the adapter set.
  void between_steps(const std::function<void()>& fn);
  bool adapter_in_use(int32_t id) const;  // an active or queued request names it
  const Options& options() const { return opt_; }
  bool accepting() const { return !stopping_; }

 private:
  void loop();
  void finish(Job& j, const std::string& reason, const std::string& error = "");
  size_t kv_bytes_for(int positions) const;
  const LlamaModel& model_;
  const Tokenizer& tok_;
  const LlamaAdapterSet* adapters_;
  Options opt_;
  LlamaSession session_;
  mutable std::mutex mu_;
  std::mutex step_mu_;  // held by the scheduler through each forward pass and its sampling
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::vector<std::shared_ptr<Job>> active_;
  std::atomic<bool> stopping_{false}, quit_{false};
  EngineMetrics m_;
  std::thread thread_;
};

}  // namespace tz::cli
