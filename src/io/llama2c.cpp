// llama2.c checkpoint reader: the header is validated and the exact file size computed (with
// overflow checks) before any weight is touched.
#include "tensorzip/io/llama2c.h"

#include <cstring>

#include "tensorzip/error.h"

namespace tz::io {
namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42"
constexpr int kMaxDim = 1 << 20;

}  // namespace

Llama2cCheckpoint Llama2cCheckpoint::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  return parse(mf->data(), mf->size(), path, mf);
}

Llama2cCheckpoint Llama2cCheckpoint::parse(const uint8_t* data, size_t size, const std::string& label,
                                           std::shared_ptr<const void> keepalive) {
  Llama2cCheckpoint ck;
  ck.label_ = label;
  ck.keepalive_ = std::move(keepalive);
  ck.size_ = size;
  ByteReader r(data, size, label);
  if (size == 0) r.fail("empty file (not a llama2.c checkpoint)");
  Llama2cConfig& c = ck.cfg_;
  size_t header_bytes = 28;
  if (size >= 4 && r.read<uint32_t>("magic") == kMagicV1) {
    c.version = r.read<int32_t>("version");
    if (c.version == 2) r.fail("llama2.c version 2 (int8 Q8_0) checkpoints are not supported yet; export version 0 or 1 (fp32)");
    if (c.version != 1) r.fail("unsupported llama2.c checkpoint version " + std::to_string(c.version));
    header_bytes = 256;
  } else {
    r.seek(0);
  }
  c.dim = r.read<int32_t>("dim");
  c.hidden_dim = r.read<int32_t>("hidden_dim");
  c.n_layers = r.read<int32_t>("n_layers");
  c.n_heads = r.read<int32_t>("n_heads");
  c.n_kv_heads = r.read<int32_t>("n_kv_heads");
  c.vocab_size = r.read<int32_t>("vocab_size");
  c.seq_len = r.read<int32_t>("seq_len");
  if (c.version == 1) {
    c.shared_classifier = r.read<uint8_t>("shared_classifier flag") != 0;
    r.take(256 - r.pos(), "header padding");
  } else {
    c.shared_classifier = c.vocab_size > 0;
    if (c.vocab_size < 0) c.vocab_size = c.vocab_size == INT32_MIN ? 0 : -c.vocab_size;
  }
  const auto bad = [&](const std::string& what) { r.fail("invalid header (not a llama2.c checkpoint?): " + what); };
  for (auto [v, n] : {std::pair{c.dim, "dim"}, {c.hidden_dim, "hidden_dim"}, {c.n_layers, "n_layers"}, {c.n_heads, "n_heads"},
                      {c.n_kv_heads, "n_kv_heads"}, {c.vocab_size, "vocab_size"}, {c.seq_len, "seq_len"}})
    if (v <= 0 || v > kMaxDim) bad(std::string(n) + " = " + std::to_string(v));
  if (c.dim % c.n_heads != 0) bad("dim " + std::to_string(c.dim) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    bad("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " + std::to_string(c.n_kv_heads));
  if (c.head_size() % 2 != 0) bad("head size " + std::to_string(c.head_size()) + " is odd (RoPE needs pairs)");

  const int64_t L = c.n_layers, D = c.dim, H = c.hidden_dim, KV = c.kv_dim(), V = c.vocab_size, S = c.seq_len;
  std::vector<std::pair<std::string, Shape>> order;
  if (c.version == 0) {
    order = {{"token_embedding", {V, D}}, {"rms_att", {L, D}}, {"wq", {L, D, D}}, {"wk", {L, KV, D}},
             {"wv", {L, KV, D}}, {"wo", {L, D, D}}, {"rms_ffn", {L, D}}, {"w1", {L, H, D}},
             {"w2", {L, D, H}}, {"w3", {L, H, D}}, {"rms_final", {D}},
             {"freq_cis_real", {S, c.head_size() / 2}}, {"freq_cis_imag", {S, c.head_size() / 2}}};
  } else {
    order = {{"rms_att", {L, D}}, {"rms_ffn", {L, D}}, {"rms_final", {D}}, {"token_embedding", {V, D}},
             {"wq", {L, D, D}}, {"wk", {L, KV, D}}, {"wv", {L, KV, D}}, {"wo", {L, D, D}},
             {"w1", {L, H, D}}, {"w2", {L, D, H}}, {"w3", {L, H, D}}};
  }
  if (!c.shared_classifier) order.push_back({"wcls", {V, D}});

  uint64_t off = header_bytes;
  for (auto& [name, shape] : order) {
    const uint64_t bytes = uint64_t(shape_numel(shape)) * 4;  // dims <= 2^20: < 2^62 per tensor
    ck.tensors_.push_back({name, shape, off});
    off = bytes > UINT64_MAX - off ? UINT64_MAX : off + bytes;  // saturate: reported as truncated
  }
  if (off != size) {
    const std::string sizes = "header says " + std::to_string(off) + " bytes (dim=" + std::to_string(c.dim) +
                              ", layers=" + std::to_string(c.n_layers) + ", vocab=" + std::to_string(c.vocab_size) +
                              "), file has " + std::to_string(size);
    r.fail(off > size ? "truncated: " + sizes : "size mismatch (trailing bytes or wrong header): " + sizes);
  }
  ck.data_ = data;
  return ck;
}

Tensor Llama2cCheckpoint::tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) {
      const uint8_t* p = data_ + t.offset;
      if (reinterpret_cast<uintptr_t>(p) % 4 != 0) {
        Tensor out = Tensor::empty(DType::F32, t.shape);
        std::memcpy(out.raw(), p, out.nbytes());
        return out;
      }
      return Tensor::borrowed(DType::F32, t.shape, p, keepalive_);
    }
  throw Error(label_ + ": no tensor named '" + name + "'");
}

}  // namespace tz::io
