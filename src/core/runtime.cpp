// The log hook: the library reports through it and never writes to stdout/stderr itself.
#include <mutex>

#include "tensorzip/runtime.h"

namespace tz {
namespace {
std::mutex g_log_mutex;
LogCallback g_log_cb;
}  // namespace

void set_log_callback(LogCallback cb) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log_cb = std::move(cb);
}

void log(LogLevel level, std::string_view msg) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_cb) g_log_cb(level, msg);
}

Range split_range(int64_t n, int64_t parts, int64_t i, int64_t align) {
  if (parts <= 0) parts = 1;
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / parts, rem = units % parts;
  const int64_t b = i * per + (i < rem ? i : rem);
  const int64_t e = b + per + (i < rem ? 1 : 0);
  return {std::min(n, b * align), std::min(n, e * align)};
}

}  // namespace tz
