// Process-wide runtime: the log hook (the library never prints) and the one thread pool every
// kernel uses. Kernels are threading-agnostic: they take a range; parallel_for hands out ranges.
#pragma once
#include <cstdint>
#include <functional>
#include <string_view>

namespace tz {

enum class LogLevel { Debug, Info, Warn, Error };
using LogCallback = std::function<void(LogLevel, std::string_view)>;
// Install a log sink (default: none, messages are dropped). Thread-safe.
void set_log_callback(LogCallback cb);
void log(LogLevel level, std::string_view msg);

// Threads used by parallel_for and by the BLAS backend. Default: all online cores. Changing it
// while another thread is inside a kernel is not supported (the pool is rebuilt).
void set_num_threads(int n);
int num_threads();
int hardware_threads();

// Runs fn(task, thread) for task in [0, n_tasks) on the pool; the calling thread is thread 0.
// Tasks are handed out dynamically; fn must not call parallel_for itself (it runs inline if it does).
void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

// Splits [0, n) into about `parts` contiguous chunks aligned to `align`: chunk i is [begin, end).
struct Range { int64_t begin, end; };
Range split_range(int64_t n, int64_t parts, int64_t i, int64_t align = 1);

}  // namespace tz
