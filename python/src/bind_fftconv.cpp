// tensorzip.FftConvPlan, fftconv, fftconv_backward: long convolution through the FFT (fftconv.h).
#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"
#include "tensorzip/fftconv.h"

namespace tzpy {
namespace {

struct Plan {
  tz::FftConvPlan plan;
  bool causal = true;
};

std::vector<uint8_t> mask_of(const py::object& m) {
  if (m.is_none()) return {};
  const ArrayView v = view(m, "freq_mask", 1);
  if (v.elem != Elem::U8 && v.elem != Elem::Bool) type_error("freq_mask: expected uint8 or bool flags, got " + v.dtype_name);
  return std::vector<uint8_t>(v.ptr<uint8_t>(), v.ptr<uint8_t>() + v.size());
}

Plan make_plan(int64_t n, py::handle k_obj, bool causal, const py::object& freq_mask, bool bf16) {
  const ArrayView k = view(k_obj, "k", 2);
  std::vector<float> kf;
  const float* kp = k.elem == Elem::F32 ? k.ptr<float>() : (kf = to_f32(k)).data();
  tz::FftConvOptions opt;
  opt.mode = causal ? tz::ConvMode::Causal : tz::ConvMode::Circular;
  opt.freq_mask = mask_of(freq_mask);
  opt.dtype = bf16 ? tz::ConvDtype::Bf16 : tz::ConvDtype::F32;
  py::gil_scoped_release nogil;
  return Plan{tz::FftConvPlan::create(n, k.shape[0], kp, k.shape[1], opt), causal};
}

// u as [B, H, N] (a 2-D [H, N] is one batch row); returns B.
int64_t batch_of(const ArrayView& u, const char* name, const Plan& p) {
  if (u.ndim() != 2 && u.ndim() != 3) value_error(std::string(name) + ": expected (B, H, N) or (H, N), got shape " + u.shape_str());
  expect_dim(u, name, u.ndim() - 2, p.plan.h(), "H, the filters' rows");
  expect_dim(u, name, u.ndim() - 1, p.plan.n(), "N, the plan's length");
  return u.ndim() == 3 ? u.shape[0] : 1;
}

// A float32 operand of the same shape as u: the data itself, or a converted copy kept in `store`.
const float* f32_operand(const ArrayView& v, const ArrayView& u, const char* name, std::vector<float>& store) {
  if (v.shape != u.shape) value_error(std::string(name) + ": shape " + v.shape_str() + " differs from u's " + u.shape_str());
  if (v.elem == Elem::F32) return v.ptr<float>();
  store = to_f32(v);
  return store.data();
}

std::pair<py::object, py::object> gates_of(const py::object& gate) {
  if (gate.is_none()) return {py::none(), py::none()};
  auto t = gate.cast<py::tuple>();
  if (t.size() != 2) value_error("gate: expected (pregate, postgate): y = postgate * conv(pregate * u, k)");
  return {t[0], t[1]};
}

py::object plan_conv(const Plan& p, py::handle u_obj, const py::object& pregate, const py::object& postgate) {
  const ArrayView u = view(u_obj, "u");
  const int64_t b = batch_of(u, "u", p);
  py::array_t<float> y = new_output<float>(u.shape);  // every sample written
  float* yp = y.mutable_data();
  if (pregate.is_none() != postgate.is_none()) value_error("fftconv: give both pregate and postgate, or neither");
  if (!pregate.is_none()) {
    std::vector<float> su, sw, sv;
    const float* up = f32_operand(u, u, "u", su);
    const float* wp = f32_operand(view(pregate, "pregate"), u, "pregate", sw);
    const float* vp = f32_operand(view(postgate, "postgate"), u, "postgate", sv);
    py::gil_scoped_release nogil;
    p.plan.conv_gated(up, vp, wp, b, yp);
  } else if (u.elem == Elem::BF16) {
    py::gil_scoped_release nogil;
    p.plan.conv_bf16(u.ptr<uint16_t>(), b, yp);
  } else {
    std::vector<float> su;
    const float* up = f32_operand(u, u, "u", su);
    py::gil_scoped_release nogil;
    p.plan.conv(up, b, yp);
  }
  return out(y, u.torch);
}

py::tuple plan_backward(const Plan& p, py::handle u_obj, py::handle dy_obj, const py::object& pregate, const py::object& postgate,
                        bool need_du) {
  const ArrayView u = view(u_obj, "u");
  const int64_t b = batch_of(u, "u", p);
  std::vector<float> su, sdy;
  const float* up = f32_operand(u, u, "u", su);
  const float* dyp = f32_operand(view(dy_obj, "dy"), u, "dy", sdy);
  py::array_t<float> dk = new_output<float>({p.plan.h(), p.plan.filter_length()});  // overwritten
  float* dkp = dk.mutable_data();
  if (pregate.is_none() != postgate.is_none()) value_error("fftconv_backward: give both pregate and postgate, or neither");
  if (!pregate.is_none()) {
    std::vector<float> sw, sv;
    const float* wp = f32_operand(view(pregate, "pregate"), u, "pregate", sw);
    const float* vp = f32_operand(view(postgate, "postgate"), u, "postgate", sv);
    py::array_t<float> du = new_output<float>(u.shape), dw = new_output<float>(u.shape), dv = new_output<float>(u.shape);
    float *dup = du.mutable_data(), *dwp = dw.mutable_data(), *dvp = dv.mutable_data();
    {
      py::gil_scoped_release nogil;
      p.plan.backward_gated(up, vp, wp, dyp, b, dup, dvp, dwp, dkp);
    }
    return py::make_tuple(out(du, u.torch), out(dk, u.torch), out(dw, u.torch), out(dv, u.torch));
  }
  py::object du_obj = py::none();
  float* dup = nullptr;
  if (need_du) {
    py::array_t<float> du = new_output<float>(u.shape);
    dup = du.mutable_data();
    du_obj = du;
  }
  {
    py::gil_scoped_release nogil;
    p.plan.backward(up, dyp, b, dup, dkp);
  }
  return py::make_tuple(need_du ? out(du_obj.cast<py::array>(), u.torch) : py::object(py::none()), out(dk, u.torch));
}

int64_t length_of(py::handle u_obj) {
  const ArrayView u = view(u_obj, "u");
  if (u.ndim() != 2 && u.ndim() != 3) value_error("u: expected (B, H, N) or (H, N), got shape " + u.shape_str());
  return u.shape.back();
}

}  // namespace

void bind_fftconv(py::module_& m) {
  py::class_<Plan>(m, "FftConvPlan", R"(A long convolution planned once: the filters' spectra are computed and kept.

FftConvPlan(n, k, causal=True, freq_mask=None, bf16=False)
  n          sequence length, a power of two, 8 <= n <= 2**22
  k          filters (H, Nk), Nk <= n (a shorter filter is a partial convolution); f32 (f16/bf16/f64 converted)
  causal     True: linear convolution, the first n outputs (inputs zero-padded to 2n); False: circular of period n
  freq_mask  one uint8/bool flag per block of 64 spectrum bins; 0 zeroes the filter there (frequency-sparse)
  bf16       build the bf16 kernels too (AMX Monarch FFT / direct convolution where the CPU has AMX))")
      .def(py::init([](int64_t n, py::handle k, bool causal, const py::object& freq_mask, bool bf16) {
             return make_plan(n, k, causal, freq_mask, bf16);
           }),
           py::arg("n"), py::arg("k"), py::arg("causal") = true, py::arg("freq_mask") = py::none(), py::arg("bf16") = false)
      .def("conv", &plan_conv, py::arg("u"), py::arg("pregate") = py::none(), py::arg("postgate") = py::none(),
           R"(y = postgate * conv(pregate * u, k) (gates optional) for u (B, H, n) or (H, n): f32, bf16 or f16 in, f32 out.)")
      .def("backward", &plan_backward, py::arg("u"), py::arg("dy"), py::arg("pregate") = py::none(), py::arg("postgate") = py::none(),
           py::arg("need_du") = true,
           R"(Gradients of conv given dy = dL/dy: (du, dk), or (du, dk, dpregate, dpostgate) with gates. dk (H, Nk) is summed over the batch.)")
      .def_property_readonly("n", [](const Plan& p) { return p.plan.n(); })
      .def_property_readonly("h", [](const Plan& p) { return p.plan.h(); })
      .def_property_readonly("filter_length", [](const Plan& p) { return p.plan.filter_length(); })
      .def_property_readonly("causal", [](const Plan& p) { return p.causal; })
      .def_property_readonly("kernel", [](const Plan& p) { return std::string(p.plan.kernel()); })
      .def_property_readonly("kernel_bf16", [](const Plan& p) { return std::string(p.plan.kernel_bf16()); })
      .def("workspace_bytes_per_thread", [](const Plan& p) { return p.plan.workspace_bytes_per_thread(); });

  m.def(
      "fftconv",
      [](py::handle u, py::handle k, bool causal, const py::object& gate, const py::object& freq_mask) {
        const bool bf16 = view(u, "u").elem == Elem::BF16;
        const Plan p = make_plan(length_of(u), k, causal, freq_mask, bf16);
        const auto [pre, post] = gates_of(gate);
        return plan_conv(p, u, pre, post);
      },
      py::arg("u"), py::arg("k"), py::arg("causal") = true, py::arg("gate") = py::none(), py::arg("freq_mask") = py::none(),
      R"(Long convolution of every row of u (B, H, N) with its filter k[h] (H, Nk <= N), as FlashFFTConv computes it.

causal=True: y[t] = sum_{s<=t} u[t-s] k[s] (zero-padded, linear); False: circular of period N.
gate=(pregate, postgate): y = postgate * conv(pregate * u, k), fused (Hyena).
freq_mask: uint8 flags per 64 spectrum bins (frequency-sparse). N is a power of two >= 8.
Returns float32 of u's shape; numpy in -> numpy out, torch in -> torch out.)");

  m.def(
      "fftconv_backward",
      [](py::handle u, py::handle k, py::handle dy, bool causal, const py::object& gate, const py::object& freq_mask) {
        const Plan p = make_plan(length_of(u), k, causal, freq_mask, false);
        const auto [pre, post] = gates_of(gate);
        return plan_backward(p, u, dy, pre, post, true);
      },
      py::arg("u"), py::arg("k"), py::arg("dy"), py::arg("causal") = true, py::arg("gate") = py::none(), py::arg("freq_mask") = py::none(),
      R"(Gradients of fftconv given dy: (du, dk), or (du, dk, dpregate, dpostgate) with gate. dk is summed over the batch.)");
}

}  // namespace tzpy
