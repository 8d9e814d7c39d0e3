// Read-only memory map of a whole file. Tensors read from model files borrow from it (zero copy)
// and keep it alive through shared ownership.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tz::io {

class MappedFile {
 public:
  // Throws tz::Error naming the file if it cannot be opened or mapped. Empty files map to size 0.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// What a model file holds, from its first bytes: "gguf" (magic), "safetensors" (a header length
// that fits, then '{'), else "llama2c" (llama2.c checkpoints have no magic).
std::string sniff_format(const uint8_t* data, size_t size);

// The whole file as a string (text: evaluation and calibration corpora). Throws tz::Error naming it.
std::string read_text_file(const std::string& path);

// Bounds-checked little-endian reader over a byte range; every failure names `label` (the file).
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string label) : p_(data), size_(size), label_(std::move(label)) {}
  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  void seek(size_t pos);
  const uint8_t* take(size_t n, const char* what);  // pointer to n bytes, advances
  template <class T> T read(const char* what);      // trivially-copyable little-endian value
  std::string read_string(uint64_t len, const char* what);
  [[noreturn]] void fail(const std::string& msg) const;

 private:
  const uint8_t* p_;
  size_t size_, pos_ = 0;
  std::string label_;
};

}  // namespace tz::io

#include <cstring>
namespace tz::io {
template <class T> T ByteReader::read(const char* what) {
  T v;
  std::memcpy(&v, take(sizeof(T), what), sizeof(T));
  return v;
}
}  // namespace tz::io
