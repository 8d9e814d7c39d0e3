#include "tools/cli/serve_engine.h"

#include <algorithm>

#include "tensorzip/error.h"

namespace tz::cli {

using Clock = std::chrono::steady_clock;

void EngineMetrics::Histogram::add(double v) {
  size_t b = 0;
  while (b < std::size(kBuckets) && v > kBuckets[b]) ++b;
  ++counts[b];
  sum += v;
  ++n;
}

bool Job::next(JobEvent& e, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  e = std::move(events_.front());
  events_.pop_front();
  return true;
}

void Job::push(JobEvent e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

Engine::Engine(const LlamaModel& model, const Tokenizer& tok, const LlamaAdapterSet* adapters, Options o)
    : model_(model), tok_(tok), adapters_(adapters), opt_(o), session_(model, o.ctx) {
  require(o.parallel > 0 && o.queue >= 0 && o.prefill_chunk > 0 && o.ctx > 1, "serve: --parallel, --queue and the context must be positive");
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  shutdown(std::chrono::milliseconds(0));
  if (thread_.joinable()) thread_.join();
}

size_t Engine::kv_bytes_for(int positions) const {
  const LlamaConfig& c = model_.config();
  return 2 * size_t(positions) * size_t(c.kv_dim()) * size_t(c.n_layers) * sizeof(float);
}

std::shared_ptr<Job> Engine::submit(std::vector<int> prompt, int32_t adapter, GenerationParams p) {
  require(!prompt.empty(), "the prompt has no tokens");
  require(int(prompt.size()) < opt_.ctx, "the prompt is " + std::to_string(prompt.size()) + " tokens; the context (--ctx-size) holds " +
                                             std::to_string(opt_.ctx));
  require(opt_.kv_budget_bytes == 0 || kv_bytes_for(int(prompt.size()) + 1) <= opt_.kv_budget_bytes,
          "the prompt's KV cache alone exceeds the server's budget (--kv-budget-mib)");
  auto j = std::make_shared<Job>();
  j->prompt_ = std::move(prompt);
  j->adapter_ = adapter;
  j->params_ = std::move(p);
  j->sampler_.emplace(model_.config().vocab_size, j->params_.temperature, j->params_.top_p, j->params_.seed);
  j->text_ = std::make_unique<ReplyText>(tok_, j->prompt_.back(), j->params_.limits);
  j->submitted_ = j->last_event_ = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    require(!stopping_, "the server is shutting down");
    if (int(waiting_.size()) >= opt_.queue) throw QueueFull();
    waiting_.push_back(j);
    m_.queue_depth = int(waiting_.size());
  }
  cv_.notify_all();
  return j;
}

void Engine::shutdown(std::chrono::milliseconds drain) {
  stopping_ = true;
  const auto until = Clock::now() + drain;
  while (Clock::now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty() && active_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& j : waiting_) j->cancel();
    for (auto& j : active_) j->cancel();
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

void Engine::between_steps(const std::function<void()>& fn) {
  std::lock_guard<std::mutex> lock(step_mu_);
  fn();
}

bool Engine::adapter_in_use(int32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& j : active_)
    if (j->adapter_ == id) return true;
  for (const auto& j : waiting_)
    if (j->adapter_ == id) return true;
  return false;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return m_;
}

void Engine::finish(Job& j, const std::string& reason, const std::string& error) {
  JobEvent e;
  e.done = true;
  e.finish_reason = reason;
  e.error = error;
  if (reason == "stop" || reason == "length") e.text = j.text_->stop() == "stop" ? "" : j.text_->flush();
  e.prompt_tokens = int(j.prompt_.size());
  e.completion_tokens = j.generated_;
  j.push(std::move(e));
  std::lock_guard<std::mutex> lock(mu_);
  if (reason == "cancelled") ++m_.requests_cancelled;
  else ++m_.requests_finished;
  m_.request_latency.add(std::chrono::duration<double>(Clock::now() - j.submitted_).count());
}

void Engine::loop() {
  const int V = model_.config().vocab_size;
  std::vector<std::vector<float>> logits;
  while (true) {
    std::vector<std::shared_ptr<Job>> batch_jobs;
    std::vector<LlamaSession::BatchEntry> batch;
    std::vector<std::shared_ptr<Job>> dropped;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return quit_ || !waiting_.empty() || !active_.empty(); });
      if (quit_) {
        for (auto& j : active_) dropped.push_back(j);
        for (auto& j : waiting_) dropped.push_back(j);
        active_.clear();
        waiting_.clear();
      } else {
        // Leave: cancelled sequences free their caches. Join: queued ones, while the active set and
        // the KV budget (each sequence counted at its whole context) allow.
        for (auto it = active_.begin(); it != active_.end();)
          if ((*it)->cancelled()) dropped.push_back(*it), it = active_.erase(it);
          else ++it;
        for (auto it = waiting_.begin(); it != waiting_.end();)
          if ((*it)->cancelled()) dropped.push_back(*it), it = waiting_.erase(it);
          else ++it;
        while (!waiting_.empty() && int(active_.size()) < opt_.parallel &&
               (opt_.kv_budget_bytes == 0 || active_.empty() || kv_bytes_for(opt_.ctx) * (active_.size() + 1) <= opt_.kv_budget_bytes)) {
          active_.push_back(waiting_.front());
          waiting_.pop_front();
        }
        m_.queue_depth = int(waiting_.size());
        m_.active = int(active_.size());
        batch_jobs = active_;
      }
    }
    for (auto& j : dropped) finish(*j, "cancelled");
    if (quit_) return;
    if (batch_jobs.empty()) continue;
    std::lock_guard<std::mutex> step(step_mu_);
    logits.resize(batch_jobs.size());
    int rows = 0;
    for (size_t i = 0; i < batch_jobs.size(); ++i) {
      Job& j = *batch_jobs[i];
      LlamaSession::BatchEntry e;
      e.cache = &j.cache_;
      e.adapter = j.adapter_;
      logits[i].resize(size_t(V));
      e.logits = logits[i].data();
      if (j.prefilled_ < int(j.prompt_.size())) {  // a prefill chunk
        e.tokens = j.prompt_.data() + j.prefilled_;
        e.n = std::min(opt_.prefill_chunk, int(j.prompt_.size()) - j.prefilled_);
        e.pos = j.prefilled_;
      } else {  // the next token
        e.tokens = &j.last_token_;
        e.n = 1;
        e.pos = int(j.prompt_.size()) + j.generated_ - 1;
      }
      rows += e.n;
      batch.push_back(e);
    }
    try {
      session_.forward_batch(batch, adapters_);
    } catch (const std::exception& ex) {  // e.g. out of memory for a cache: fail these requests, keep serving
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& j : batch_jobs) {
        j->cancel();
        JobEvent e;
        e.done = true;
        e.finish_reason = "error";
        e.error = ex.what();
        j->push(std::move(e));
      }
      active_.erase(std::remove_if(active_.begin(), active_.end(), [](auto& j) { return j->cancelled(); }), active_.end());
      continue;
    }
    const auto now = Clock::now();
    std::vector<std::shared_ptr<Job>> done;
    uint64_t generated = 0, prompt_tokens = 0;
    for (size_t i = 0; i < batch_jobs.size(); ++i) {
      Job& j = *batch_jobs[i];
      if (j.prefilled_ < int(j.prompt_.size())) {
        j.prefilled_ += batch[i].n;
        prompt_tokens += uint64_t(batch[i].n);
        if (j.prefilled_ < int(j.prompt_.size())) continue;  // more prompt to go
      }
      const int next = j.sampler_->sample(logits[i].data());
      std::string shown;
      const bool more = j.text_->push(next, shown);
      if (more || j.text_->stop() == "stop") ++j.generated_, ++generated;
      j.last_token_ = next;
      const double dt = std::chrono::duration<double>(now - j.last_event_).count();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!j.first_token_sent_) m_.time_to_first_token.add(std::chrono::duration<double>(now - j.submitted_).count());
        else m_.per_token.add(dt);
      }
      j.first_token_sent_ = true;
      j.last_event_ = now;
      if (!shown.empty()) {
        JobEvent ev;
        ev.text = std::move(shown);
        j.push(std::move(ev));
      }
      const int positions = int(j.prompt_.size()) + j.generated_;
      if (!more) done.push_back(batch_jobs[i]), finish(j, "stop");
      else if (j.generated_ >= j.params_.max_tokens || positions >= opt_.ctx) done.push_back(batch_jobs[i]), finish(j, "length");
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& j : done) active_.erase(std::find(active_.begin(), active_.end(), j));
    ++m_.steps;
    m_.rows += uint64_t(rows);
    m_.generated_tokens += generated;
    m_.prompt_tokens += prompt_tokens;
    m_.last_batch_sequences = int(batch.size());
    m_.last_batch_rows = rows;
    m_.batch_sequences.add(double(batch.size()));
    m_.active = int(active_.size());
    size_t kv = 0;
    for (auto& j : active_) kv += j->cache_.bytes();
    m_.kv_bytes = kv;
  }
}

}  // namespace tz::cli
