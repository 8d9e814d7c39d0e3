#include "tools/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace tz::cli {

Progress::Progress(int total, bool enabled)
    : total_(total), enabled_(enabled && isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { done(); }

void Progress::step(const std::string& label) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int width = 24, filled = total_ > 0 ? width * current_ / total_ : 0;
  std::string bar(size_t(filled), '#');
  bar.append(size_t(width - filled), '.');
  std::string eta = "--";
  if (current_ > 0) {
    const double left = elapsed / current_ * (total_ - current_);
    eta = std::to_string(int(left + 0.5)) + "s";
  }
  std::fprintf(stderr, "\r\033[K[%s] %d/%d ETA %s  %s", bar.c_str(), current_ + 1, total_, eta.c_str(), label.c_str());
  std::fflush(stderr);
  ++current_;
}

void Progress::done() {
  if (!enabled_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  enabled_ = false;
}

}  // namespace tz::cli
