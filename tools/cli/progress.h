// A one-line progress bar with ETA on stderr, drawn only when stderr is a terminal and output is
// not JSON. The library never prints; long CLI jobs report through this.
#pragma once
#include <chrono>
#include <string>

namespace tz::cli {

class Progress {
 public:
  Progress(int total, bool enabled);
  ~Progress();
  void step(const std::string& label);  // starts item `label` (previous ones are done)
  void done();

 private:
  int total_, current_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tz::cli
