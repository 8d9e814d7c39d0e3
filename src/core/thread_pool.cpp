// The one thread pool. Workers persist across calls and spin briefly before sleeping, because
// decode-time kernels (GEMV) finish in tens of microseconds and a condition-variable wake-up costs
// about as much. The calling thread always takes part as thread 0.
#include <immintrin.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

thread_local bool t_in_pool = false;

class ThreadPool {
 public:
  explicit ThreadPool(int n) : n_threads_(n) {
    try {
      for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::system_error& e) {
      // The workers already started wait on this pool's condition variable: stop and join them
      // before the members die, or destroying the condition variable waits forever.
      const size_t started = workers_.size() + 1;
      shutdown();
      throw Error("cannot start " + std::to_string(n) + " threads, only " + std::to_string(started) + " could be created (" +
                  e.what() + "); use fewer (--threads)");
    }
  }
  ~ThreadPool() { shutdown(); }
  int size() const { return n_threads_; }

 private:
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

 public:

  void run(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      participants_ = int(std::min<int64_t>(n_tasks, n_threads_)) - 1;
      pending_.store(participants_, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_start_.notify_all();
    t_in_pool = true;
    work(0);
    t_in_pool = false;
    std::unique_lock<std::mutex> lock(mutex_);
    cv_done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(int thread) {
    for (;;) {
      const int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
      if (task >= n_tasks_) break;
      try {
        (*fn_)(task, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_tasks_, std::memory_order_relaxed);  // stop handing out work
      }
    }
  }

  void worker_loop(int index) {
    t_in_pool = true;
    uint64_t seen = 0;
    for (;;) {
      // Spin ~50 µs for the next call before blocking.
      for (int spin = 0; spin < 20000 && generation_.load(std::memory_order_acquire) == seen; ++spin)
        _mm_pause();
      std::unique_lock<std::mutex> lock(mutex_);
      cv_start_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      if (index > participants_) continue;
      lock.unlock();
      work(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> done_lock(mutex_);
        cv_done_.notify_one();
      }
    }
  }

  const int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_, error_mutex_;
  std::condition_variable cv_start_, cv_done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  int participants_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

std::mutex g_pool_mutex;
std::unique_ptr<ThreadPool> g_pool;
std::atomic<int> g_threads{0};

}  // namespace

int hardware_threads() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

void set_num_threads(int n) {
  require(n >= 1 && n <= 1024, "thread count must be 1..1024, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool && g_pool->size() == n) return;
  g_pool.reset();
  g_pool = std::make_unique<ThreadPool>(n);
  g_threads.store(n);
}

int num_threads() {
  const int n = g_threads.load();
  return n > 0 ? n : hardware_threads();
}

void parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  if (n_tasks == 1 || num_threads() == 1 || t_in_pool) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  ThreadPool* pool;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (!g_pool) {
      g_pool = std::make_unique<ThreadPool>(num_threads());
      g_threads.store(g_pool->size());
    }
    pool = g_pool.get();
  }
  pool->run(n_tasks, fn);
}

}  // namespace tz
