// Hugging Face quantized checkpoints: AutoAWQ's GEMM layout and GPTQ's (AutoGPTQ / GPTQModel),
// read into tensorzip's QuantMatrix with the codes unchanged (docs/formats.md, "AWQ and GPTQ
// checkpoints"). Both store a linear layer W [out, in] as int32 words over Wᵀ [in, out]:
//
//   AutoAWQ GEMM (4-bit, zero points):
//     qweight I32 [in, out/8]          eight codes per word along `out`; nibble i of word c holds
//                                      column 8c + {0,2,4,6,1,3,5,7}[i]
//     qzeros  I32 [in/group, out/8]    the zero points, packed the same way
//     scales  F16 [in/group, out]      w = scales · (q − zero)
//   GPTQ (2, 3, 4 or 8 bits):
//     qweight I32 [in·bits/32, out]    along `in`, each column of words a little-endian bit stream
//                                      with input i at bit i·bits (3-bit values straddle words)
//     qzeros  I32 [groups, out·bits/32] the zero points, a bit stream along `out` per group;
//                                      checkpoint_format "gptq" (v1) stores zero − 1, "gptq_v2" zero
//     scales  F16 [groups, out]        w = scales[g_idx[i]] · (q − zero[g_idx[i]])
//     g_idx   I32 [in]                 each input's group: i / group, or with act-order (desc_act)
//                                      any assignment giving every group `group` inputs
//
// Act-order groups are not contiguous along the input; tensorzip's are, so such a layer is read
// with its columns gathered group by group and the input permutation kept beside it
// (CompressedLinear::input_perm): y = Q·x[perm], codes unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tensorzip/format.h"
#include "tensorzip/tensor.h"

namespace tz::io {

// config.json's quantization_config.
struct HfQuantConfig {
  enum class Method { Awq, Gptq } method = Method::Gptq;
  int bits = 4;
  int group = 128;           // 0: one group per row (group_size -1)
  bool sym = false;          // GPTQ sym (zero 2^(bits−1) in every group); AWQ's GEMM layout is always zero-point
  bool desc_act = false;     // GPTQ act-order: g_idx may permute the groups
  bool zeros_minus_one = true;  // GPTQ v1 ("gptq"): stored zero = zero − 1; v2 and AWQ store the zero
  bool lm_head = false;      // GPTQModel's lm_head: true (the classifier quantized too)
  // AWQ: modules kept dense. Informational: the loader takes whichever of BASE.qweight and
  // BASE.weight each module has, so a listed module is read as the dense weight it is stored as.
  std::vector<std::string> modules_to_not_convert;
  std::string name() const;  // "awq 4-bit g128", "gptq 3-bit g64 sym act-order"
};

// Every field checked: quant_method awq or gptq, AWQ version gemm with zero_point, GPTQ bits 2/3/4/8,
// format gptq/gptq_v2, pack_dtype int32; fields that only describe the calibration run are
// accepted, any other field is an error naming it (a layout tensorzip does not read must not load
// as garbage). `object_text` is the quantization_config object as JSON text.
HfQuantConfig parse_hf_quant_config(std::string_view object_text, const std::string& label);

// One quantized linear layer's tensors as the checkpoint holds them (g_idx: GPTQ, optional).
struct HfQuantTensors {
  Tensor qweight, qzeros, scales, g_idx;
};

// The layer as a QuantMatrix (rows = out, cols = in; asymmetric, integer zero points; scales f16
// when the file's are f16, else f32) and, for act-order, the input permutation (empty when the
// groups are contiguous). Shapes, dtypes, g_idx and every scale are checked; errors name `label`.
struct HfQuantLinear {
  QuantMatrix q;
  std::vector<int32_t> input_perm;
};
HfQuantLinear unpack_hf_quant(const HfQuantConfig& cfg, const HfQuantTensors& t, const std::string& label);

// The inverse: a QuantMatrix (asymmetric, integer zeros < 2^bits, or < 2^bits + 1 for GPTQ v1)
// written in cfg's layout; with input_perm, g_idx places column j of q at input input_perm[j].
// Tests write checkpoints with it; the bytes equal AutoAWQ's / AutoGPTQ's own pack functions'.
HfQuantTensors pack_hf_quant(const HfQuantConfig& cfg, const QuantMatrix& q, const std::vector<int32_t>& input_perm = {});

}  // namespace tz::io
