// Temp-file-then-rename writes (see atomic_file.h).
#include "tensorzip/io/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tensorzip/error.h"

namespace tz::io {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  std::vector<char> tmpl(path_.begin(), path_.end());
  const char suffix[] = ".tmp-XXXXXX";
  tmpl.insert(tmpl.end(), suffix, suffix + sizeof(suffix));
  const int fd = mkstemp(tmpl.data());
  if (fd < 0) throw Error(path_ + ": cannot create a temporary file beside it: " + std::strerror(errno));
  tmp_path_ = tmpl.data();
  fchmod(fd, 0644);  // mkstemp makes 0600; model files are meant to be shared
  f_ = fdopen(fd, "wb");
  if (f_ == nullptr) {
    ::close(fd);
    ::unlink(tmp_path_.c_str());
    throw Error(path_ + ": fdopen failed");
  }
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, f_) != n)
    throw Error(path_ + ": write failed: " + std::strerror(errno));
  written_ += n;
}

void AtomicFile::write_zeros(size_t n) {
  static const char zeros[256] = {};
  while (n > 0) {
    const size_t c = n < sizeof(zeros) ? n : sizeof(zeros);
    write(zeros, c);
    n -= c;
  }
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    throw Error(path_ + ": flush failed: " + std::strerror(errno));
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw Error(path_ + ": close failed: " + std::strerror(errno));
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": rename from temporary failed: " + std::strerror(errno));
  committed_ = true;
}

}  // namespace tz::io
