// AutoAWQ GEMM and GPTQ checkpoints to and from QuantMatrix (layouts in hf_quant.h), written from
// the projects' public pack/unpack code (AutoAWQ awq/modules/linear/gemm.py and
// awq/utils/packing_utils.py; AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda.py; GPTQModel's
// v1/v2 zero-point formats).
#include "tensorzip/io/hf_quant.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <cstring>

#include "core/json.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz::io {
namespace {

// AutoAWQ's order_map: nibble i of a word holds column 8c + {0,2,4,6,1,3,5,7}[i], so column
// 8c + k sits in nibble kAwqNibble[k].
constexpr int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// Fields that describe how a checkpoint was calibrated or which kernels a Python runtime picks:
// they do not change what the tensors mean.
const std::set<std::string>& inert_fields() {
  static const std::set<std::string> s = {
      // transformers' GPTQConfig / AutoGPTQ's quantize_config.json
      "tokenizer", "dataset", "damp_percent", "true_sequential", "use_cuda_fp16", "model_seqlen", "block_name_to_quantize",
      "module_name_preceding_first_block", "batch_size", "pad_token_id", "use_exllama", "max_input_length", "exllama_config",
      "cache_block_outputs", "modules_in_block_to_quantize", "model_name_or_path", "model_file_base_name", "static_groups",
      "backend", "meta", "is_marlin_format",
      // GPTQModel's calibration options
      "damp_auto_increment", "mse", "v2", "v2_alpha", "act_group_aware", "hyb_act", "gptaq", "foem", "quantizer", "uri",
      "offload_to_disk", "offload_to_disk_path", "fail_safe", "device",
      // transformers' AwqConfig
      "do_fuse", "fuse_max_seq_len", "modules_to_fuse"};
  return s;
}

int64_t read_index(const Tensor& t, int64_t i) { return t.dtype() == DType::I64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i]; }

// `bits` wide field number k of a little-endian bit stream of 32-bit words w[0], w[stride], ….
uint32_t stream_field(const uint32_t* w, int64_t stride, int64_t k, int bits) {
  const int64_t bit = k * bits, word = bit / 32, shift = bit % 32;
  uint64_t v = w[word * stride];
  if (shift + bits > 32) v |= uint64_t(w[(word + 1) * stride]) << 32;
  return uint32_t(v >> shift) & ((1u << bits) - 1u);
}

void stream_put(uint32_t* w, int64_t stride, int64_t k, int bits, uint32_t value) {
  const int64_t bit = k * bits, word = bit / 32, shift = bit % 32;
  const uint64_t v = uint64_t(value) << shift;
  w[word * stride] |= uint32_t(v);
  if (shift + bits > 32) w[(word + 1) * stride] |= uint32_t(v >> 32);
}

void require_shape(const Tensor& t, const Shape& want, const std::string& label, const char* what) {
  require(t.shape() == want, label + "." + what + " has shape " + shape_to_string(t.shape()) + ", expected " + shape_to_string(want));
}

std::vector<float> read_scales(const Tensor& t, const std::string& label) {
  require(t.dtype() == DType::F16 || t.dtype() == DType::BF16 || t.dtype() == DType::F32,
          label + ".scales has dtype " + dtype_name(t.dtype()) + " (need f16, bf16 or f32)");
  require(t.is_contiguous(), label + ".scales is not contiguous");
  const Tensor f = t.to(DType::F32);
  std::vector<float> s(f.data<float>(), f.data<float>() + f.numel());
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::isfinite(s[i])) throw Error(label + ".scales: value " + std::to_string(i) + " is not finite");
  return s;
}

}  // namespace

std::string HfQuantConfig::name() const {
  std::string s = std::string(method == Method::Awq ? "awq" : "gptq") + " " + std::to_string(bits) + "-bit " +
                  (group == 0 ? std::string("per-row") : "g" + std::to_string(group));
  if (method == Method::Gptq) s += std::string(sym ? " sym" : " asym") + (desc_act ? " act-order" : "") + (zeros_minus_one ? "" : " v2");
  return s;
}

HfQuantConfig parse_hf_quant_config(std::string_view object_text, const std::string& label) {
  const std::string where = label + ": quantization_config";
  const json_io::Json j = json_io::parse(object_text, where);
  require(j.is_object(), where + " is not an object");
  HfQuantConfig c;
  try {
    const std::string method = j.contains("quant_method") && j["quant_method"].is_string() ? j["quant_method"].get<std::string>() : "";
    require(method == "awq" || method == "gptq",
            where + ": quant_method '" + (j.contains("quant_method") ? j["quant_method"].dump() : std::string("(absent)")) +
                "' is not supported (awq in AutoAWQ's GEMM layout, gptq)");
    c.method = method == "awq" ? HfQuantConfig::Method::Awq : HfQuantConfig::Method::Gptq;
    const bool awq = c.method == HfQuantConfig::Method::Awq;
    // AutoAWQ's own quant_config.json spells them w_bit / q_group_size.
    c.bits = int(json_io::get_int(j, j.contains("w_bit") ? "w_bit" : "bits", where, 1, 8));
    const int64_t g = json_io::get_int(j, j.contains("q_group_size") ? "q_group_size" : "group_size", where, -1, int64_t(1) << 24, -1);
    require(g != 0, where + ": group_size 0 (use -1 for one group per row)");
    c.group = g < 0 ? 0 : int(g);
    const auto boolean = [&](const char* key, bool def) {
      if (!j.contains(key) || j[key].is_null()) return def;
      require(j[key].is_boolean(), where + ": '" + key + "' is not true or false");
      return j[key].get<bool>();
    };
    const auto string = [&](const char* key, const std::string& def) {
      if (!j.contains(key) || j[key].is_null()) return def;
      require(j[key].is_string(), where + ": '" + key + "' is not a string");
      return j[key].get<std::string>();
    };
    if (awq) {
      require(c.bits == 4, where + ": AWQ with " + std::to_string(c.bits) + " bits (AutoAWQ's GEMM layout is 4-bit)");
      std::string version = string("version", "gemm");
      std::transform(version.begin(), version.end(), version.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
      require(version == "gemm", where + ": version '" + version + "' is not supported (AutoAWQ's gemm layout; gemv, gemv_fast and marlin pack differently)");
      require(boolean("zero_point", true), where + ": zero_point false (AWQ without zero points has no GEMM layout)");
      c.sym = false;
      c.zeros_minus_one = false;
      if (j.contains("modules_to_not_convert") && !j["modules_to_not_convert"].is_null()) {
        require(j["modules_to_not_convert"].is_array(), where + ": 'modules_to_not_convert' is not a list");
        for (const auto& m : j["modules_to_not_convert"]) {
          require(m.is_string(), where + ": 'modules_to_not_convert' holds a non-string");
          c.modules_to_not_convert.push_back(m.get<std::string>());
        }
      }
    } else {
      require(c.bits == 2 || c.bits == 3 || c.bits == 4 || c.bits == 8,
              where + ": GPTQ with " + std::to_string(c.bits) + " bits (GPTQ's packing holds 2, 3, 4 or 8)");
      c.sym = boolean("sym", true);
      c.desc_act = boolean("desc_act", false);
      c.lm_head = boolean("lm_head", false);
      // checkpoint_format (transformers) or format (GPTQModel): gptq = v1 (zeros stored minus one).
      const std::string fmt = string("checkpoint_format", string("format", "gptq"));
      require(fmt == "gptq" || fmt == "gptq_v2",
              where + ": checkpoint_format '" + fmt + "' is not supported (gptq, gptq_v2; marlin, bitblas and the others pack differently)");
      c.zeros_minus_one = fmt == "gptq";
      const std::string pack = string("pack_dtype", "int32");
      require(pack == "int32" || pack == "torch.int32", where + ": pack_dtype '" + pack + "' is not supported (int32)");
      for (const char* key : {"dynamic", "adapter", "rotation"})
        require(!j.contains(key) || j[key].is_null() || (j[key].is_object() && j[key].empty()),
                where + ": '" + key + "' is not supported (" +
                    (std::string(key) == "dynamic" ? "per-module bits and groups" : std::string(key) == "adapter" ? "a GPTQModel adapter" : "rotated weights") + ")");
    }
    static const std::set<std::string> read = {"quant_method", "bits", "w_bit", "group_size", "q_group_size", "version", "zero_point",
                                               "modules_to_not_convert", "sym", "desc_act", "lm_head", "checkpoint_format", "format",
                                               "pack_dtype", "dynamic", "adapter", "rotation"};
    for (const auto& [key, value] : j.items())
      require(read.count(key) || inert_fields().count(key),
              where + ": field '" + key + "' is not supported (tensorzip reads the layout it describes or refuses the checkpoint)");
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

HfQuantLinear unpack_hf_quant(const HfQuantConfig& cfg, const HfQuantTensors& t, const std::string& label) {
  const bool awq = cfg.method == HfQuantConfig::Method::Awq;
  const int bits = cfg.bits;
  for (const auto& [tensor, what] : {std::pair{&t.qweight, "qweight"}, std::pair{&t.qzeros, "qzeros"}})
    require(tensor->dtype() == DType::I32 && tensor->ndim() == 2 && tensor->is_contiguous(),
            label + "." + what + " must be a contiguous 2-d I32 tensor, got " + dtype_name(tensor->dtype()) + " " + shape_to_string(tensor->shape()));
  require(t.scales.ndim() == 2, label + ".scales must be 2-d, got " + shape_to_string(t.scales.shape()));
  // Shapes from qweight: AWQ [in, out/8], GPTQ [in·bits/32, out].
  const int64_t in = awq ? t.qweight.dim(0) : t.qweight.dim(0) * 32 / bits;
  const int64_t out = awq ? t.qweight.dim(1) * 8 : t.qweight.dim(1);
  require(in > 0 && out > 0, label + ".qweight is empty");
  require(awq || (t.qweight.dim(0) * 32) % bits == 0, label + ".qweight has " + std::to_string(t.qweight.dim(0)) +
                                                          " rows: not a whole number of " + std::to_string(bits) + "-bit inputs");
  require(awq || out * bits % 32 == 0, label + ": " + std::to_string(out) + " outputs do not fill whole qzeros words");
  const int64_t group = cfg.group == 0 ? in : cfg.group;
  require(!awq || in % group == 0, label + ": " + std::to_string(in) + " inputs are not a whole number of groups of " + std::to_string(group));
  const int64_t ng = (in + group - 1) / group;
  require_shape(t.qzeros, {ng, awq ? out / 8 : out * bits / 32}, label, "qzeros");
  require_shape(t.scales, {ng, out}, label, "scales");
  const std::vector<float> scales = read_scales(t.scales, label);

  // Each input's group, and the gathered order that makes groups contiguous.
  std::vector<int32_t> gidx(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) gidx[size_t(i)] = int32_t(i / group);
  if (!awq && t.g_idx.defined() && t.g_idx.numel() > 0) {
    require((t.g_idx.dtype() == DType::I32 || t.g_idx.dtype() == DType::I64) && t.g_idx.is_contiguous(),
            label + ".g_idx has dtype " + dtype_name(t.g_idx.dtype()) + " (need I32)");
    require_shape(t.g_idx, {in}, label, "g_idx");
    for (int64_t i = 0; i < in; ++i) {
      const int64_t g = read_index(t.g_idx, i);
      require(g >= 0 && g < ng, label + ".g_idx[" + std::to_string(i) + "] = " + std::to_string(g) + " is not a group (0.." + std::to_string(ng - 1) + ")");
      gidx[size_t(i)] = int32_t(g);
    }
  }
  std::vector<int32_t> perm(static_cast<size_t>(in));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return gidx[size_t(a)] < gidx[size_t(b)]; });
  for (int64_t j = 0; j < in; ++j)
    require(gidx[size_t(perm[size_t(j)])] == j / group,
            label + ".g_idx: group " + std::to_string(j / group) + " does not hold " + std::to_string(std::min(group, in - j / group * group)) +
                " inputs (tensorzip's groups are contiguous runs of group_size inputs; act-order permutes whole groups only)");
  const bool permuted = !std::is_sorted(gidx.begin(), gidx.end());

  HfQuantLinear r;
  QuantMatrix& q = r.q;
  q.fmt.bits = bits;
  q.fmt.group = cfg.group;
  q.fmt.symmetric = false;
  q.fmt.scale_dtype = t.scales.dtype() == DType::F16 ? DType::F16 : DType::F32;
  q.rows = out;
  q.cols = in;
  q.scales.resize(size_t(out * ng));
  q.zeros.resize(size_t(out * ng));
  const auto* qw = reinterpret_cast<const uint32_t*>(t.qweight.data<int32_t>());
  const auto* qz = reinterpret_cast<const uint32_t*>(t.qzeros.data<int32_t>());
  const int64_t zcols = t.qzeros.dim(1), wcols = t.qweight.dim(1);
  const uint32_t offset = cfg.zeros_minus_one ? 1 : 0;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < out; ++o) {
      q.scales[size_t(o * ng + g)] = scales[size_t(g * out + o)];
      const uint32_t z = awq ? (qz[g * zcols + o / 8] >> (4 * kAwqNibble[o % 8])) & 15u : stream_field(qz + g * zcols, 1, o, bits);
      // v1's zero − 1 wraps for a zero of 0: AutoGPTQ's kernels then use 2^bits, as this does.
      q.zeros[size_t(o * ng + g)] = float(z + offset);
    }
  const size_t row_bytes = q.packed_row_bytes();
  if (!awq && !permuted) {
    // GPTQ's column of words for output o is the little-endian bit stream tensorzip packs row o in
    // (input i at bit i·bits): the rows are the words transposed, byte for byte.
    const int64_t nw = t.qweight.dim(0);
    require(row_bytes == size_t(nw) * 4, label + ": internal: GPTQ rows of " + std::to_string(in) + " inputs do not fill whole words");
    q.codes.resize(size_t(out) * row_bytes);
    constexpr int64_t kTile = 64;
    parallel_for((out + kTile - 1) / kTile, [&](int64_t tile, int) {
      const int64_t o0 = tile * kTile, o1 = std::min(out, o0 + kTile);
      for (int64_t w = 0; w < nw; ++w) {
        const uint32_t* src = qw + w * wcols;
        for (int64_t o = o0; o < o1; ++o) std::memcpy(q.codes.data() + size_t(o) * row_bytes + size_t(w) * 4, src + o, 4);
      }
    });
    return r;
  }
  q.codes.assign(size_t(out) * row_bytes, 0);
  // The codes as Wᵀ [in, out], decoded in the words' memory order (rows of qweight), then gathered
  // into W's rows in tiles of outputs: both passes read memory in order whatever the permutation
  // (a column walk through qweight per output cost a cache miss per code on act-order layers).
  std::vector<uint8_t> ct(size_t(in) * size_t(out));
  parallel_for(in, [&](int64_t i, int) {
    uint8_t* dst = ct.data() + size_t(i) * size_t(out);
    if (awq) {
      const uint32_t* w = qw + i * wcols;
      for (int64_t o = 0; o < out; ++o) dst[o] = uint8_t((w[o / 8] >> (4 * kAwqNibble[o % 8])) & 15u);
    } else {
      for (int64_t o = 0; o < out; ++o) dst[o] = uint8_t(stream_field(qw + o, wcols, i, bits));
    }
  });
  constexpr int64_t kTile = 64;
  parallel_for((out + kTile - 1) / kTile, [&](int64_t tile, int) {
    const int64_t o0 = tile * kTile, no = std::min(kTile, out - o0);
    std::vector<uint8_t> rows(size_t(no) * size_t(in));
    for (int64_t j = 0; j < in; ++j) {
      const uint8_t* src = ct.data() + size_t(perm[size_t(j)]) * size_t(out) + size_t(o0);
      for (int64_t k = 0; k < no; ++k) rows[size_t(k) * size_t(in) + size_t(j)] = src[k];
    }
    for (int64_t k = 0; k < no; ++k) pack_codes_ref(rows.data() + size_t(k) * size_t(in), in, bits, q.codes.data() + size_t(o0 + k) * row_bytes);
  });
  if (permuted) r.input_perm = std::move(perm);
  return r;
}

HfQuantTensors pack_hf_quant(const HfQuantConfig& cfg, const QuantMatrix& q, const std::vector<int32_t>& input_perm) {
  const bool awq = cfg.method == HfQuantConfig::Method::Awq;
  const int bits = cfg.bits;
  const int64_t out = q.rows, in = q.cols, group = cfg.group == 0 ? in : cfg.group, ng = q.groups_per_row();
  require(q.fmt.bits == bits && !q.fmt.symmetric && !q.fmt.ternary && q.fmt.group_size(in) == (cfg.group == 0 ? int(in) : cfg.group),
          "pack_hf_quant: the matrix's format " + q.fmt.to_string() + " is not " + cfg.name());
  require(awq ? out % 8 == 0 && in % group == 0 : (in * bits) % 32 == 0 && (out * bits) % 32 == 0,
          "pack_hf_quant: shape [" + std::to_string(out) + ", " + std::to_string(in) + "] does not fill whole words");
  require(input_perm.empty() || (!awq && int64_t(input_perm.size()) == in), "pack_hf_quant: an input permutation needs GPTQ and one entry per input");
  HfQuantTensors t;
  t.qweight = Tensor::zeros(DType::I32, awq ? Shape{in, out / 8} : Shape{in * bits / 32, out});
  t.qzeros = Tensor::zeros(DType::I32, awq ? Shape{ng, out / 8} : Shape{ng, out * bits / 32});
  t.scales = Tensor::empty(q.fmt.scale_dtype == DType::F16 ? DType::F16 : DType::F32, {ng, out});
  auto* qw = reinterpret_cast<uint32_t*>(t.qweight.data<int32_t>());
  auto* qz = reinterpret_cast<uint32_t*>(t.qzeros.data<int32_t>());
  const int64_t wcols = t.qweight.dim(1), zcols = t.qzeros.dim(1);
  const uint32_t offset = cfg.zeros_minus_one ? 1 : 0, mask = (1u << bits) - 1u;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t o = 0; o < out; ++o) {
      const float s = q.scales[size_t(o * ng + g)], zf = q.zeros[size_t(o * ng + g)];
      if (t.scales.dtype() == DType::F16) t.scales.data<uint16_t>()[g * out + o] = f32_to_f16_scalar(s);
      else t.scales.data<float>()[g * out + o] = s;
      require(zf == std::nearbyint(zf) && zf >= float(offset) && zf <= float(mask + offset), "pack_hf_quant: zero point " + std::to_string(zf) + " is not storable");
      const uint32_t z = (uint32_t(zf) - offset) & mask;
      if (awq) qz[g * zcols + o / 8] |= z << (4 * kAwqNibble[o % 8]);
      else stream_put(qz + g * zcols, 1, o, bits, z);
    }
  std::vector<uint8_t> codes(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    unpack_codes_ref(q.codes.data() + size_t(o) * q.packed_row_bytes(), in, bits, codes.data());
    for (int64_t j = 0; j < in; ++j) {
      const int64_t i = input_perm.empty() ? j : input_perm[size_t(j)];
      if (awq) qw[i * wcols + o / 8] |= uint32_t(codes[size_t(j)]) << (4 * kAwqNibble[o % 8]);
      else stream_put(qw + o, wcols, i, bits, codes[size_t(j)]);
    }
  }
  if (!awq) {
    t.g_idx = Tensor::empty(DType::I32, {in});
    for (int64_t j = 0; j < in; ++j) t.g_idx.data<int32_t>()[input_perm.empty() ? j : input_perm[size_t(j)]] = int32_t(j / group);
  }
  return t;
}

}  // namespace tz::io
