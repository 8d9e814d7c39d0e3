// GGUF v2/v3 (llama.cpp's model format): magic "GGUF", version, tensor and key/value counts,
// typed metadata, tensor infos (name, dims with ne[0] fastest, ggml type, offset), then the
// alignment-padded data section. Every count, length and offset is checked against the bytes that
// remain before it is used, so a corrupt file cannot make the reader allocate or read past the end.
// Shapes are reported outermost-first (row-major, as safetensors does): ggml ne = {4096, 11008}
// becomes [11008, 4096].
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tensorzip/io/mapped_file.h"
#include "tensorzip/tensor.h"

namespace tz::io {

enum class GgufType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64, COUNT };
const char* gguf_type_name(GgufType t);  // "u8", "string", "array", ...

using GgufScalar = std::variant<uint64_t, int64_t, double, bool, std::string>;

struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType array_type = GgufType::U8;  // element type when type == ARRAY
  std::vector<GgufScalar> items;       // one item for scalars, all elements for arrays
  std::string type_string() const;     // "u32", "array[string; 32000]"
  std::string to_string(size_t max_items = 8) const;
  // Typed access; throws tz::Error if the value is not a scalar of a compatible type.
  uint64_t as_uint() const;
  std::string as_string() const;
};

struct GgufKV { std::string key; GgufValue value; };

// ggml tensor types and their block geometry (values per block, bytes per block).
struct GgmlTypeInfo { uint32_t id; const char* name; uint32_t block_values; uint32_t block_bytes; };
const GgmlTypeInfo* ggml_type_info(uint32_t id);  // nullptr for unknown ids
const GgmlTypeInfo* ggml_type_by_name(std::string_view name);  // "q4_K" → its info; nullptr if unknown
constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ4_1 = 3, kGgmlQ5_0 = 6, kGgmlQ5_1 = 7, kGgmlQ8_0 = 8,
                   kGgmlQ2_K = 10, kGgmlQ3_K = 11, kGgmlQ4_K = 12, kGgmlQ5_K = 13, kGgmlQ6_K = 14, kGgmlIQ4_NL = 20,
                   kGgmlIQ4_XS = 23, kGgmlBF16 = 30, kGgmlTQ1_0 = 34, kGgmlTQ2_0 = 35;

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  Shape shape;          // outermost first
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& label,
                        std::shared_ptr<const void> keepalive = nullptr);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::vector<GgufKV>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // Raw bytes of a tensor (zero copy).
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return data_ + t.offset; }
  // The tensor as f32 (dequantized for q4_0 / q8_0, converted for f16 / bf16; f32 copied).
  Tensor tensor_f32(const std::string& name) const;
  const std::string& label() const { return label_; }
  // What keeps tensor_data() valid (the mapped file), or null when the caller owns the bytes.
  const std::shared_ptr<const void>& keepalive() const { return keepalive_; }

 private:
  std::string label_;
  std::shared_ptr<const void> keepalive_;
  uint32_t version_ = 0, alignment_ = 32;
  std::vector<GgufKV> kv_;
  std::vector<GgufTensorInfo> tensors_;
  const uint8_t* data_ = nullptr;
};

// Minimal GGUF v3 writer (tests, fuzz corpora, and exporting to llama.cpp).
class GgufWriter {
 public:
  void add(const std::string& key, GgufValue value);
  void add_u32(const std::string& key, uint32_t v);
  void add_f32(const std::string& key, float v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  // Bytes of a tensor already in ggml_type's layout; shape outermost first.
  void add_tensor(const std::string& name, uint32_t ggml_type, const Shape& shape, std::vector<uint8_t> bytes);
  std::vector<uint8_t> serialize() const;
  void write(const std::string& path) const;  // atomic

 private:
  std::vector<GgufKV> kv_;
  struct T { std::string name; uint32_t type; Shape shape; std::vector<uint8_t> bytes; };
  std::vector<T> tensors_;
};

}  // namespace tz::io
