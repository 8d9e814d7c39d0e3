// mmap-backed file access and the bounds-checked reader every parser uses.
#include "tensorzip/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tensorzip/error.h"

namespace tz::io {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever, before the
  // regular-file check below could refuse it. (It has no effect on regular files.)
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file" + (S_ISDIR(st.st_mode) ? " (a directory)" : S_ISFIFO(st.st_mode) ? " (a FIFO)" : ""));
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(path + ": cannot map: " + std::strerror(err));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

void ByteReader::fail(const std::string& msg) const { throw Error(label_ + ": " + msg); }

void ByteReader::seek(size_t pos) {
  if (pos > size_) fail("offset " + std::to_string(pos) + " is past the end of the file (" + std::to_string(size_) + " bytes)");
  pos_ = pos;
}

const uint8_t* ByteReader::take(size_t n, const char* what) {
  if (n > remaining())
    fail(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes at offset " +
         std::to_string(pos_) + ", only " + std::to_string(remaining()) + " left");
  const uint8_t* q = p_ + pos_;
  pos_ += n;
  return q;
}

std::string ByteReader::read_string(uint64_t len, const char* what) {
  if (len > remaining())
    fail(std::string("truncated or corrupt: ") + what + " of length " + std::to_string(len) +
         " at offset " + std::to_string(pos_) + " exceeds the " + std::to_string(remaining()) + " bytes left");
  const uint8_t* q = take(size_t(len), what);
  return std::string(reinterpret_cast<const char*>(q), size_t(len));
}

std::string sniff_format(const uint8_t* p, size_t size) {
  if (size >= 4 && std::memcmp(p, "GGUF", 4) == 0) return "gguf";
  if (size >= 9) {  // 8-byte little-endian header length, then the JSON header
    uint64_t n;
    std::memcpy(&n, p, 8);
    if (n <= size - 8 && p[8] == '{') return "safetensors";
  }
  return "llama2c";
}

std::string read_text_file(const std::string& path) {
  const auto f = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

}  // namespace tz::io
