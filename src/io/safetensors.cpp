// safetensors reader and writer (format: https://github.com/huggingface/safetensors, README).
#include "tensorzip/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"

namespace tz::io {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit (100 MB)

// safetensors dtype spellings for the dtypes that have one (packed codes travel as U8).
const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::BOOL: return "BOOL";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    default: return nullptr;
  }
}

std::optional<DType> st_dtype_from_name(const std::string& s) {
  for (int i = 0; i < int(DType::COUNT); ++i) {
    const char* n = st_dtype_name(DType(i));
    if (n != nullptr && s == n) return DType(i);
  }
  return std::nullopt;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  return parse(mf->data(), mf->size(), path, mf);
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& label,
                                       std::shared_ptr<const void> keepalive) {
  SafetensorsFile f;
  f.label_ = label;
  f.keepalive_ = std::move(keepalive);
  ByteReader r(data, size, label);
  if (size == 0) r.fail("empty file (not safetensors)");
  const uint64_t n = r.read<uint64_t>("header length");
  if (n > kMaxHeader) r.fail("header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt or not safetensors)");
  if (n > r.remaining()) r.fail("truncated: header length " + std::to_string(n) + " but only " + std::to_string(r.remaining()) + " bytes follow");
  const char* hdr = reinterpret_cast<const char*>(r.take(size_t(n), "header"));
  f.data_ = data + r.pos();
  f.data_size_ = r.remaining();

  // Duplicate names would make "which tensor is 'x'" depend on the reader: refused.
  const nlohmann::json j = json_io::parse(std::string_view(hdr, size_t(n)), label + ": header", {.reject_duplicate_keys = true});
  if (!j.is_object()) r.fail("header JSON is not an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) r.fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) r.fail("__metadata__ value for '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) r.fail(where + ": entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) r.fail(where + ": missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) r.fail(where + ": missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      r.fail(where + ": missing or malformed data_offsets");
    SafetensorsEntry e;
    e.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    const auto dtype = st_dtype_from_name(dt);
    if (!dtype) r.fail(where + ": unsupported dtype '" + dt + "'");
    e.dtype = *dtype;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) r.fail(where + ": shape entries must be non-negative integers");
      e.shape.push_back(int64_t(std::min<uint64_t>(d.get<uint64_t>(), uint64_t(1) << 62)));
    }
    for (const auto& o : v["data_offsets"])
      if (!o.is_number_unsigned()) r.fail(where + ": data_offsets must be non-negative integers");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    int64_t numel;
    try {
      numel = shape_numel(e.shape);
    } catch (const Error&) {
      r.fail(where + ": shape " + shape_to_string(e.shape) + " is too large");
    }
    const uint64_t es = dtype_size(e.dtype);
    if (uint64_t(numel) > UINT64_MAX / es) r.fail(where + ": byte size overflows");
    if (e.end < e.begin) r.fail(where + ": data_offsets end < begin");
    if (e.end - e.begin != uint64_t(numel) * es)
      r.fail(where + ": data_offsets span " + std::to_string(e.end - e.begin) + " bytes but " + dt +
             shape_to_string(e.shape) + " needs " + std::to_string(uint64_t(numel) * es));
    if (e.end > f.data_size_)
      r.fail(where + ": data ends at byte " + std::to_string(e.end) + " of the data region, which has only " +
             std::to_string(f.data_size_) + " (truncated file?)");
    f.entries_.push_back(std::move(e));
  }
  // Offsets must tile the data region with no gaps or overlaps (the reference validator's rule).
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : f.entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t pos = 0;
  for (const auto* e : sorted) {
    if (e->begin != pos) r.fail("tensor '" + e->name + "' starts at " + std::to_string(e->begin) + ", expected " + std::to_string(pos) + " (gap or overlap in data_offsets)");
    pos = e->end;
  }
  if (pos != f.data_size_)
    r.fail("data region has " + std::to_string(f.data_size_) + " bytes but the tensors cover " + std::to_string(pos));
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  require(e != nullptr, label_ + ": no tensor named '" + name + "'");
  const uint8_t* p = data_ + e->begin;
  const size_t es = dtype_size(e->dtype);
  if (reinterpret_cast<uintptr_t>(p) % es != 0) {
    Tensor t = Tensor::empty(e->dtype, e->shape);
    std::memcpy(t.raw(), p, t.nbytes());
    return t;
  }
  return Tensor::borrowed(e->dtype, e->shape, p, keepalive_);
}

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
  require(!name.empty() && name != "__metadata__", "safetensors: invalid tensor name '" + name + "'");
  for (const auto& [n, _] : tensors_) require(n != name, "safetensors: duplicate tensor name '" + name + "'");
  require(st_dtype_name(t.dtype()) != nullptr,
          std::string("safetensors: dtype ") + dtype_name(t.dtype()) + " has no safetensors spelling (store packed codes as U8)");
  tensors_.emplace_back(name, t.is_contiguous() ? t : t.clone());
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (const auto& [name, t] : tensors_) {
    nlohmann::ordered_json e;
    e["dtype"] = st_dtype_name(t.dtype());
    e["shape"] = t.shape();
    e["data_offsets"] = {off, off + t.nbytes()};
    off += t.nbytes();
    h[name] = e;
  }
  std::string hdr = json_io::dump(h);
  // Pad with spaces (valid JSON) so the data region starts on a 64-byte boundary.
  hdr.append((64 - (8 + hdr.size()) % 64) % 64, ' ');
  AtomicFile out(path);
  const uint64_t n = hdr.size();
  out.write(&n, 8);
  out.write(hdr.data(), hdr.size());
  for (const auto& [name, t] : tensors_) out.write(t.raw(), t.nbytes());
  out.commit();
}

}  // namespace tz::io
