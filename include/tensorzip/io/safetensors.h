// safetensors: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes.
// The reader maps the file and validates the whole header (dtypes, shapes, offsets that tile the
// data region exactly, as the reference implementation demands) before any tensor is touched.
// The writer pads the header so data starts 64-byte aligned and writes atomically.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tensorzip/io/mapped_file.h"
#include "tensorzip/tensor.h"

namespace tz::io {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // offsets into the data region
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  // Parses an in-memory image; `label` names it in errors. The bytes must outlive the object.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& label,
                               std::shared_ptr<const void> keepalive = nullptr);

  const std::vector<SafetensorsEntry>& tensors() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;
  // Zero-copy view (copied only if the bytes are not aligned to the element size).
  Tensor tensor(const std::string& name) const;
  const std::string& label() const { return label_; }

 private:
  std::string label_;
  std::shared_ptr<const void> keepalive_;
  const uint8_t* data_ = nullptr;  // start of the data region
  size_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // The tensor is referenced, not copied, until write(); it must stay alive. Names must be unique.
  void add(const std::string& name, const Tensor& t);
  void write(const std::string& path) const;  // atomic

 private:
  std::map<std::string, std::string> metadata_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

}  // namespace tz::io
