// Writes a file atomically: bytes go to a temporary file beside the target, which is renamed over
// it on commit(). If commit() is never reached (an error, an exception) the temporary is removed,
// so a failed write never leaves a partial output file.
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>

namespace tz::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  size_t bytes_written() const { return written_; }
  void commit();  // flush, fsync, rename; throws tz::Error naming the file on failure

 private:
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  size_t written_ = 0;
  bool committed_ = false;
};

}  // namespace tz::io
