// tensorzip.quantize, Quantized, LutWeights, mpgemm: low-bit weights and the LUT / int8 kernels
// that multiply by them without dequantizing (quantize.h, mpgemm.h).
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "arrays.h"
#include "bindings.h"
#include "py_types.h"
#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/quantize.h"

namespace tzpy {
namespace {

bool has_extras(const tz::CompressedLinear& c) {
  return !c.input_perm.empty() || !c.input_scale.empty() || !c.outlier_cols.empty() || c.rank > 0;
}

Quantized quantize(py::handle w_obj, int bits, int group, const std::string& method, bool symmetric, const py::object& x_obj,
                   const std::string& scale_dtype, bool clip, bool act_order, int outliers, int lowrank, const std::string& lowrank_method) {
  const ArrayView w = view(w_obj, "w", 2);
  std::vector<float> wf;
  const float* wp = w.elem == Elem::F32 ? w.ptr<float>() : (wf = to_f32(w)).data();
  tz::QuantizeOptions o;
  o.method = tz::parse_quant_method(method);
  o.fmt.bits = bits;
  o.fmt.group = group;
  o.fmt.symmetric = symmetric;
  if (scale_dtype != "float16" && scale_dtype != "float32") value_error("scale_dtype: 'float16' or 'float32', got '" + scale_dtype + "'");
  o.fmt.scale_dtype = scale_dtype == "float16" ? tz::DType::F16 : tz::DType::F32;
  o.clip_search = clip;
  o.act_order = act_order;
  o.outliers = outliers;
  o.lowrank = lowrank;
  o.lowrank_method = tz::parse_lowrank_method(lowrank_method);
  const int64_t rows = w.shape[0], cols = w.shape[1];
  std::optional<tz::ActStats> stats;
  if (!x_obj.is_none()) {
    const ArrayView x = view(x_obj, "x", 2);
    expect_dim(x, "x", 1, cols, "the weight's input width");
    std::vector<float> xf;
    const float* xp = x.elem == Elem::F32 ? x.ptr<float>() : (xf = to_f32(x)).data();
    const bool hessian = o.method == tz::QuantMethod::Gptq || (lowrank > 0 && o.lowrank_method != tz::LowRankMethod::Svd);
    py::gil_scoped_release nogil;
    stats.emplace(cols, hessian);
    stats->add(xp, x.shape[0]);
  }
  py::gil_scoped_release nogil;
  return Quantized{std::make_shared<tz::CompressedLinear>(tz::compress_linear(wp, rows, cols, stats ? &*stats : nullptr, o))};
}

py::array_t<uint8_t> codes_of(const tz::QuantMatrix& q) {
  py::array_t<uint8_t> c = new_array<uint8_t>({q.rows, q.cols});
  uint8_t* p = c.mutable_data();
  const int bits = q.fmt.ternary ? 2 : q.fmt.bits;
  for (int64_t r = 0; r < q.rows; ++r)
    tz::unpack_codes_ref(q.codes.data() + size_t(r) * q.packed_row_bytes(), q.cols, bits, p + r * q.cols);
  return c;
}

py::object floats(const std::vector<float>& v, std::vector<int64_t> shape) {
  if (v.empty()) return py::none();
  return from_vector(std::vector<float>(v), shape);
}

LutW make_lut(const Quantized& q) {
  const tz::CompressedLinear& c = *q.c;
  if (c.ggml) value_error("LutWeights: llama.cpp blocks run on their own kernels, not the LUT");
  py::gil_scoped_release nogil;
  LutW l;
  l.source = q.c;
  if (has_extras(c))
    l.linear = std::make_shared<tz::Linear>(tz::Linear::from_compressed(c));
  else
    l.lut = std::make_shared<tz::LutWeights>(tz::LutWeights::pack(c.q));
  return l;
}

py::object mpgemm(py::handle x_obj, const LutW& w, const std::string& mode, const std::string& path) {
  const ArrayView x = view(x_obj, "x");
  if (x.ndim() != 1 && x.ndim() != 2) value_error("x: expected (n, k) or (k,), got shape " + x.shape_str());
  const int64_t k = w.cols(), m = w.rows();
  expect_dim(x, "x", x.ndim() - 1, k, "the weights' input width");
  const int64_t n = x.ndim() == 2 ? x.shape[0] : 1;
  if (mode != "fast" && mode != "exact") value_error("mode: 'fast' (int8 tables) or 'exact' (f32 tables), got '" + mode + "'");
  if (path != "auto" && path != "lut" && path != "int8") value_error("path: 'auto', 'lut' or 'int8', got '" + path + "'");
  const tz::LutMode lm = mode == "fast" ? tz::LutMode::Fast : tz::LutMode::Exact;
  const tz::MpGemmPath mp = path == "auto" ? tz::MpGemmPath::Auto : path == "lut" ? tz::MpGemmPath::Lut : tz::MpGemmPath::Int8;
  py::array_t<float> y = new_output<float>(x.ndim() == 2 ? std::vector<int64_t>{n, m} : std::vector<int64_t>{m});  // written whole
  float* yp = y.mutable_data();
  std::vector<float> xs;
  if (w.linear) {
    if (mode != "fast" || path != "auto")
      value_error("mpgemm: weights with AWQ scales, outliers, an input permutation or a low-rank branch run with mode='fast', path='auto' only");
    const float* xp = x.elem == Elem::F32 ? x.ptr<float>() : (xs = to_f32(x)).data();
    py::gil_scoped_release nogil;
    w.linear->forward(xp, n, yp);
  } else if (x.elem == Elem::BF16 && mp == tz::MpGemmPath::Auto) {
    py::gil_scoped_release nogil;
    tz::mpgemm_bf16(*w.lut, x.ptr<uint16_t>(), n, k, yp, m, lm);
  } else {
    const float* xp = x.elem == Elem::F32 ? x.ptr<float>() : (xs = to_f32(x)).data();
    py::gil_scoped_release nogil;
    tz::mpgemm(*w.lut, xp, n, k, yp, m, lm, mp);
  }
  return out(y, x.torch);
}

}  // namespace

int64_t LutW::rows() const { return source->rows(); }
int64_t LutW::cols() const { return source->cols(); }

void bind_quant(py::module_& m) {
  py::class_<Quantized>(m, "Quantized", "A quantized weight matrix (out, in): codes, per-group scales and zero points, and any extras.")
      .def_property_readonly("rows", [](const Quantized& q) { return q.c->rows(); })
      .def_property_readonly("cols", [](const Quantized& q) { return q.c->cols(); })
      .def_property_readonly("bits", [](const Quantized& q) { return q.c->q.fmt.bits; })
      .def_property_readonly("group", [](const Quantized& q) { return q.c->q.fmt.group_size(q.c->cols()); })
      .def_property_readonly("symmetric", [](const Quantized& q) { return q.c->q.fmt.symmetric; })
      .def_property_readonly("ternary", [](const Quantized& q) { return q.c->q.fmt.ternary; })
      .def_property_readonly("format", [](const Quantized& q) { return q.c->q.fmt.to_string(); })
      .def_property_readonly("method", [](const Quantized& q) { return q.c->method; })
      .def_property_readonly("codes", [](const Quantized& q) { return codes_of(q.c->q); }, "uint8 (rows, cols): the codes, one per weight")
      .def_property_readonly("scales", [](const Quantized& q) { return floats(q.c->q.scales, {q.c->q.rows, q.c->q.groups_per_row()}); },
                             "float32 (rows, groups)")
      .def_property_readonly("zeros", [](const Quantized& q) { return floats(q.c->q.zeros, {q.c->q.rows, q.c->q.groups_per_row()}); },
                             "float32 (rows, groups) zero points in code units (asymmetric), else None")
      .def_property_readonly("input_scale", [](const Quantized& q) { return floats(q.c->input_scale, {q.c->cols()}); },
                             "AWQ's per-input scale s (y = Q (x / s)), else None")
      .def_property_readonly("rank", [](const Quantized& q) { return q.c->rank; })
      .def_property_readonly("nbytes", [](const Quantized& q) { return q.c->bytes(); })
      .def_property_readonly("bits_per_weight", [](const Quantized& q) { return q.c->bits_per_weight(); })
      .def(
          "dequantize",
          [](const Quantized& q) {
            py::array_t<float> w = new_f32({q.c->rows(), q.c->cols()});
            float* p = w.mutable_data();
            py::gil_scoped_release nogil;
            q.c->dequantize(p);
            return w;
          },
          "The dense float32 matrix (rows, cols) it stands for.")
      .def("__repr__", [](const Quantized& q) {
        return "<tensorzip.Quantized " + std::to_string(q.c->rows()) + "x" + std::to_string(q.c->cols()) + " " + q.c->q.fmt.to_string() +
               " " + q.c->method + ">";
      });

  m.def("quantize", &quantize, py::arg("w"), py::arg("bits") = 4, py::arg("group") = 128, py::arg("method") = "rtn",
        py::arg("symmetric") = true, py::arg("x") = py::none(), py::arg("scale_dtype") = "float16", py::arg("clip") = false,
        py::arg("act_order") = false, py::arg("outliers") = 0, py::arg("lowrank") = 0, py::arg("lowrank_method") = "eora",
        R"(Quantize a weight matrix w (out, in), y = x @ w.T, to `bits` (1..8) with one scale per `group` inputs (0: whole row).

method: 'rtn', 'awq', 'gptq' or 'ternary' (BitNet b1.58 absmean). AWQ, GPTQ, outliers and the EoRA /
LQ-LoRA low-rank compensation need calibration inputs x (n, in). clip: RTN/AWQ clip search;
act_order: GPTQ's order; outliers: input channels kept dense; lowrank: rank of the compensation
(lowrank_method 'eora', 'lqlora' or 'svd'). Returns a Quantized.)");

  py::class_<LutW>(m, "LutWeights", R"(Low-bit weights packed into bit planes for the LUT / int8 kernels (T-MAC on a CPU).

LutWeights(q: Quantized). Multiply with tensorzip.mpgemm(x, lw).)")
      .def(py::init(&make_lut), py::arg("q"))
      .def_property_readonly("rows", &LutW::rows)
      .def_property_readonly("cols", &LutW::cols)
      .def_property_readonly("nbytes", [](const LutW& l) { return l.lut ? l.lut->bytes() : l.linear->bytes(); })
      .def_property_readonly("format", [](const LutW& l) { return l.source->q.fmt.to_string(); })
      .def_property_readonly("has_extras", [](const LutW& l) { return bool(l.linear); })
      .def("__repr__", [](const LutW& l) {
        return "<tensorzip.LutWeights " + std::to_string(l.rows()) + "x" + std::to_string(l.cols()) + " " + l.source->q.fmt.to_string() + ">";
      });

  m.def("mpgemm", &mpgemm, py::arg("x"), py::arg("w"), py::arg("mode") = "fast", py::arg("path") = "auto",
        R"(y = x @ W.T for x (n, k) or (k,) float32/bf16 and W = LutWeights (m, k), without dequantizing W.

mode 'fast': int8 lookup tables (error ~1e-2 of max|y|); 'exact': f32 tables (equals the dequantized
product to f32 rounding). path 'auto' picks LUT for few rows, the int8 kernels for many; 'lut' / 'int8' force one.)");
}

}  // namespace tzpy
