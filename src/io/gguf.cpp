// GGUF reader and writer (spec: ggml's docs/gguf.md). Counts and lengths are bounded by the bytes
// left in the file before anything is allocated.
#include "tensorzip/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/ggml_blocks.h"

namespace tz::io {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS

const GgmlTypeInfo kGgmlTypes[] = {
    {0, "f32", 1, 4},        {1, "f16", 1, 2},          {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},     {7, "q5_1", 32, 24},       {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},   {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},  {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},  {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},       {27, "i64", 1, 8},         {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},      {34, "tq1_0", 256, 54},    {35, "tq2_0", 256, 66},
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: return 8;  // at least its length prefix
    default: return 0;
  }
}

GgufScalar read_scalar(ByteReader& r, GgufType t) {
  switch (t) {
    case GgufType::U8: return uint64_t(r.read<uint8_t>("u8 value"));
    case GgufType::I8: return int64_t(r.read<int8_t>("i8 value"));
    case GgufType::U16: return uint64_t(r.read<uint16_t>("u16 value"));
    case GgufType::I16: return int64_t(r.read<int16_t>("i16 value"));
    case GgufType::U32: return uint64_t(r.read<uint32_t>("u32 value"));
    case GgufType::I32: return int64_t(r.read<int32_t>("i32 value"));
    case GgufType::F32: return double(r.read<float>("f32 value"));
    case GgufType::BOOL: return r.read<uint8_t>("bool value") != 0;
    case GgufType::STRING: return r.read_string(r.read<uint64_t>("string length"), "string value");
    case GgufType::U64: return r.read<uint64_t>("u64 value");
    case GgufType::I64: return r.read<int64_t>("i64 value");
    case GgufType::F64: return r.read<double>("f64 value");
    default: r.fail("invalid value type " + std::to_string(uint32_t(t)));
  }
}

GgufValue read_value(ByteReader& r, GgufType type, const std::string& key) {
  GgufValue v;
  v.type = type;
  if (type != GgufType::ARRAY) {
    if (uint32_t(type) >= uint32_t(GgufType::COUNT)) r.fail("key '" + key + "': invalid value type " + std::to_string(uint32_t(type)));
    v.items.push_back(read_scalar(r, type));
    return v;
  }
  v.array_type = GgufType(r.read<uint32_t>("array element type"));
  if (v.array_type == GgufType::ARRAY) r.fail("key '" + key + "': nested arrays are not supported");
  if (uint32_t(v.array_type) >= uint32_t(GgufType::COUNT))
    r.fail("key '" + key + "': invalid array element type " + std::to_string(uint32_t(v.array_type)));
  const uint64_t n = r.read<uint64_t>("array length");
  if (n > r.remaining() / scalar_size(v.array_type))
    r.fail("key '" + key + "': array of " + std::to_string(n) + " elements cannot fit in the " +
           std::to_string(r.remaining()) + " bytes left (corrupt or truncated)");
  v.items.reserve(size_t(n));
  for (uint64_t i = 0; i < n; ++i) v.items.push_back(read_scalar(r, v.array_type));
  return v;
}

std::string scalar_to_string(const GgufScalar& s) {
  struct V {
    std::string operator()(uint64_t x) const { return std::to_string(x); }
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { char b[32]; std::snprintf(b, sizeof b, "%.7g", x); return b; }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const {
      std::string out = "\"";
      for (size_t i = 0; i < x.size() && i < 80; ++i) {
        const unsigned char c = static_cast<unsigned char>(x[i]);
        if (c == '"' || c == '\\') out += '\\', out += char(c);
        else if (c < 0x20 || c == 0x7f) { char b[8]; std::snprintf(b, sizeof b, "\\x%02x", c); out += b; }
        else out += char(c);
      }
      return out + (x.size() > 80 ? "...\"" : "\"");
    }
  };
  return std::visit(V{}, s);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) < uint32_t(GgufType::COUNT) ? names[uint32_t(t)] : "?";
}

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

const GgmlTypeInfo* ggml_type_by_name(std::string_view name) {
  for (const auto& t : kGgmlTypes)
    if (name == t.name) return &t;
  return nullptr;
}

std::string GgufValue::type_string() const {
  if (type != GgufType::ARRAY) return gguf_type_name(type);
  return std::string("array[") + gguf_type_name(array_type) + "; " + std::to_string(items.size()) + "]";
}

std::string GgufValue::to_string(size_t max_items) const {
  if (type != GgufType::ARRAY) return scalar_to_string(items.at(0));
  std::string out = "[";
  for (size_t i = 0; i < items.size() && i < max_items; ++i) out += (i ? ", " : "") + scalar_to_string(items[i]);
  if (items.size() > max_items) out += ", ... (" + std::to_string(items.size()) + " items)";
  return out + "]";
}

uint64_t GgufValue::as_uint() const {
  require(type != GgufType::ARRAY && items.size() == 1, "GGUF value is not a scalar");
  if (auto* u = std::get_if<uint64_t>(&items[0])) return *u;
  if (auto* i = std::get_if<int64_t>(&items[0]); i && *i >= 0) return uint64_t(*i);
  throw Error(std::string("GGUF value of type ") + gguf_type_name(type) + " is not a non-negative integer");
}

std::string GgufValue::as_string() const {
  require(type == GgufType::STRING, std::string("GGUF value of type ") + gguf_type_name(type) + " is not a string");
  return std::get<std::string>(items.at(0));
}

GgufFile GgufFile::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  return parse(mf->data(), mf->size(), path, mf);
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& label,
                         std::shared_ptr<const void> keepalive) {
  GgufFile f;
  f.label_ = label;
  f.keepalive_ = std::move(keepalive);
  ByteReader r(data, size, label);
  if (size == 0) r.fail("empty file (not GGUF)");
  if (size < 4 || r.read<uint32_t>("magic") != kMagic) r.fail("bad magic: not a GGUF file");
  f.version_ = r.read<uint32_t>("version");
  if (f.version_ == 1) r.fail("GGUF version 1 is obsolete and not supported (re-convert with a current llama.cpp)");
  if (f.version_ != 2 && f.version_ != 3) r.fail("unsupported GGUF version " + std::to_string(f.version_));
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  if (n_kv > r.remaining() / 13) r.fail("metadata count " + std::to_string(n_kv) + " is impossible for the file size (corrupt)");

  std::set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufKV kv;
    kv.key = r.read_string(r.read<uint64_t>("key length"), "key");
    if (!keys.insert(kv.key).second) r.fail("duplicate metadata key '" + kv.key + "'");
    const auto type = GgufType(r.read<uint32_t>("value type"));
    kv.value = read_value(r, type, kv.key);
    f.kv_.push_back(std::move(kv));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufType::U32) r.fail("general.alignment must be u32, found " + a->type_string());
    const uint64_t al = a->as_uint();
    if (al == 0 || (al & (al - 1)) != 0) r.fail("general.alignment " + std::to_string(al) + " is not a power of two");
    f.alignment_ = uint32_t(al);
  }

  if (n_tensors > r.remaining() / 24) r.fail("tensor count " + std::to_string(n_tensors) + " is impossible for the file size (corrupt)");
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.read_string(r.read<uint64_t>("tensor name length"), "tensor name");
    if (!names.insert(t.name).second) r.fail("duplicate tensor name '" + t.name + "'");
    const std::string where = "tensor '" + t.name + "'";
    const uint32_t nd = r.read<uint32_t>("dimension count");
    if (nd == 0 || nd > kMaxDims) r.fail(where + ": " + std::to_string(nd) + " dimensions (must be 1..4)");
    Shape ne(nd);
    for (auto& d : ne) {
      const uint64_t v = r.read<uint64_t>("dimension");
      if (v > (uint64_t(1) << 62)) r.fail(where + ": dimension " + std::to_string(v) + " is too large");
      d = int64_t(v);
    }
    t.ggml_type = r.read<uint32_t>("tensor type");
    const GgmlTypeInfo* ti = ggml_type_info(t.ggml_type);
    if (ti == nullptr) r.fail(where + ": unknown ggml type " + std::to_string(t.ggml_type));
    t.offset = r.read<uint64_t>("tensor offset");
    t.shape.assign(ne.rbegin(), ne.rend());
    int64_t numel;
    try {
      numel = shape_numel(t.shape);
    } catch (const Error&) {
      r.fail(where + ": shape " + shape_to_string(t.shape) + " overflows");
    }
    if (ne[0] % ti->block_values != 0)
      r.fail(where + ": row length " + std::to_string(ne[0]) + " is not a multiple of the " + ti->name +
             " block size " + std::to_string(ti->block_values));
    const uint64_t blocks = uint64_t(numel) / ti->block_values;
    if (blocks > UINT64_MAX / ti->block_bytes) r.fail(where + ": byte size overflows");
    t.nbytes = blocks * ti->block_bytes;
    if (t.offset % f.alignment_ != 0)
      r.fail(where + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(f.alignment_));
    f.tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = align_up(r.pos(), f.alignment_);
  if (!f.tensors_.empty() && data_start > size)
    r.fail("truncated: the data section would start at " + std::to_string(data_start) + " but the file has " + std::to_string(size) + " bytes");
  const uint64_t data_size = data_start <= size ? size - data_start : 0;
  f.data_ = data + std::min<uint64_t>(data_start, size);
  std::vector<const GgufTensorInfo*> sorted;
  for (const auto& t : f.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      r.fail("truncated: tensor '" + t.name + "' needs bytes " + std::to_string(t.offset) + ".." +
             std::to_string(t.offset + t.nbytes) + " of the data section, which has " + std::to_string(data_size));
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i - 1]->offset + sorted[i - 1]->nbytes > sorted[i]->offset)
      r.fail("tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name + "' overlap");
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

Tensor GgufFile::tensor_f32(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  require(t != nullptr, label_ + ": no tensor named '" + name + "'");
  Tensor out = Tensor::empty(DType::F32, t->shape);
  const size_t n = size_t(out.numel());
  if (n == 0) return out;
  require(ggml_dequantize_supported(t->ggml_type),
          label_ + ": tensor '" + name + "' has ggml type " + ggml_type_info(t->ggml_type)->name +
              ", which tensorzip cannot read (supported: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs tq1_0 tq2_0)");
  dequantize_ggml(t->ggml_type, tensor_data(*t), out.data<float>(), n);
  return out;
}

// ------------------------------------------------------------------ writer

void GgufWriter::add(const std::string& key, GgufValue value) {
  for (const auto& kv : kv_) require(kv.key != key, "GGUF writer: duplicate key '" + key + "'");
  kv_.push_back({key, std::move(value)});
}
void GgufWriter::add_u32(const std::string& key, uint32_t v) { add(key, {GgufType::U32, GgufType::U8, {uint64_t(v)}}); }
void GgufWriter::add_f32(const std::string& key, float v) { add(key, {GgufType::F32, GgufType::U8, {double(v)}}); }
void GgufWriter::add_string(const std::string& key, const std::string& v) { add(key, {GgufType::STRING, GgufType::U8, {v}}); }
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  GgufValue val{GgufType::ARRAY, GgufType::STRING, {}};
  for (const auto& s : v) val.items.emplace_back(s);
  add(key, std::move(val));
}

void GgufWriter::add_tensor(const std::string& name, uint32_t type, const Shape& shape, std::vector<uint8_t> bytes) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  require(ti != nullptr, "GGUF writer: unknown ggml type " + std::to_string(type));
  require(!shape.empty() && shape.size() <= kMaxDims, "GGUF writer: tensor '" + name + "' must have 1..4 dims");
  require(shape.back() % ti->block_values == 0, "GGUF writer: tensor '" + name + "' row length is not a multiple of the block");
  require(bytes.size() == size_t(shape_numel(shape)) / ti->block_values * ti->block_bytes,
          "GGUF writer: tensor '" + name + "' byte size does not match its shape and type");
  tensors_.push_back({name, type, shape, std::move(bytes)});
}

namespace {
template <class T> void put(std::vector<uint8_t>& o, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  o.insert(o.end(), p, p + sizeof(T));
}
void put_string(std::vector<uint8_t>& o, const std::string& s) {
  put<uint64_t>(o, s.size());
  o.insert(o.end(), s.begin(), s.end());
}
void put_scalar(std::vector<uint8_t>& o, GgufType t, const GgufScalar& s) {
  const auto as_u = [&] { return std::holds_alternative<uint64_t>(s) ? std::get<uint64_t>(s) : uint64_t(std::get<int64_t>(s)); };
  switch (t) {
    case GgufType::U8: case GgufType::I8: put<uint8_t>(o, uint8_t(as_u())); break;
    case GgufType::U16: case GgufType::I16: put<uint16_t>(o, uint16_t(as_u())); break;
    case GgufType::U32: case GgufType::I32: put<uint32_t>(o, uint32_t(as_u())); break;
    case GgufType::U64: case GgufType::I64: put<uint64_t>(o, as_u()); break;
    case GgufType::F32: put<float>(o, float(std::get<double>(s))); break;
    case GgufType::F64: put<double>(o, std::get<double>(s)); break;
    case GgufType::BOOL: put<uint8_t>(o, std::get<bool>(s) ? 1 : 0); break;
    case GgufType::STRING: put_string(o, std::get<std::string>(s)); break;
    default: throw Error("GGUF writer: cannot write value type " + std::to_string(uint32_t(t)));
  }
}
}  // namespace

std::vector<uint8_t> GgufWriter::serialize() const {
  constexpr uint64_t kAlign = 32;
  std::vector<uint8_t> o;
  put<uint32_t>(o, kMagic);
  put<uint32_t>(o, 3);
  put<uint64_t>(o, tensors_.size());
  put<uint64_t>(o, kv_.size());
  for (const auto& kv : kv_) {
    put_string(o, kv.key);
    put<uint32_t>(o, uint32_t(kv.value.type));
    if (kv.value.type == GgufType::ARRAY) {
      put<uint32_t>(o, uint32_t(kv.value.array_type));
      put<uint64_t>(o, kv.value.items.size());
      for (const auto& s : kv.value.items) put_scalar(o, kv.value.array_type, s);
    } else {
      put_scalar(o, kv.value.type, kv.value.items.at(0));
    }
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_string(o, t.name);
    put<uint32_t>(o, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(o, uint64_t(*it));
    put<uint32_t>(o, t.type);
    put<uint64_t>(o, off);
    off = align_up(off + t.bytes.size(), kAlign);
  }
  o.resize(align_up(o.size(), kAlign), 0);
  for (const auto& t : tensors_) {
    o.insert(o.end(), t.bytes.begin(), t.bytes.end());
    o.resize(align_up(o.size(), kAlign), 0);
  }
  return o;
}

void GgufWriter::write(const std::string& path) const {
  const auto bytes = serialize();
  AtomicFile out(path);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

}  // namespace tz::io
