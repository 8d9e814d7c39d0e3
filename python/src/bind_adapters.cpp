// tensorzip.AdapterBank: many LoRA adapters on one base layer, each batch row through its own,
// in one fused kernel (S-LoRA / Punica; lowrank_ops.h).
#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"
#include "py_types.h"
#include "tensorzip/lowrank_ops.h"

namespace tzpy {
namespace {

std::vector<int32_t> ids_of(py::handle obj, int64_t n) {
  auto a = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a) type_error("ids: expected a sequence of adapter ids (integers)");
  if (a.ndim() != 1 || a.shape(0) != n)
    value_error("ids: expected one id per row of x (" + std::to_string(n) + "), got " + std::to_string(a.size()));
  return std::vector<int32_t>(a.data(), a.data() + n);
}

// The output y (n, out): the caller's array, added to in place, or a new zero array.
std::pair<py::object, float*> output_of(const py::object& y_obj, int64_t n, int64_t out_dim, bool torch) {
  if (y_obj.is_none()) {
    py::array_t<float> y = new_f32({n, out_dim});
    float* p = y.mutable_data();
    return {out(y, torch), p};
  }
  const ArrayView y = view_as(y_obj, "y", Elem::F32, 2);
  expect_dim(y, "y", 0, n, "x's rows");
  expect_dim(y, "y", 1, out_dim, "the bank's output width");
  if (py::isinstance<py::array>(y_obj) && !py::reinterpret_borrow<py::array>(y_obj).writeable()) value_error("y: the array is read-only");
  return {y_obj, const_cast<float*>(y.ptr<float>())};
}

struct Bank {
  tz::AdapterBank bank;
  int64_t out, in;
};

template <class Fn>
py::object run(const Bank& b, py::handle x_obj, py::handle ids_obj, const py::object& y_obj, Fn fn) {
  const ArrayView x = view_as(x_obj, "x", Elem::F32, 2);
  expect_dim(x, "x", 1, b.in, "the bank's input width");
  const int64_t n = x.shape[0];
  const std::vector<int32_t> ids = ids_of(ids_obj, n);
  auto [y, yp] = output_of(y_obj, n, b.out, x.torch);
  py::gil_scoped_release nogil;
  fn(x.ptr<float>(), n, ids.data(), yp);
  return y;
}

}  // namespace

void bind_adapters(py::module_& m) {
  py::class_<Bank>(m, "AdapterBank", R"(Many LoRA adapters on one base layer y = x @ W.T (W: out x in); each batch row names its adapter.

AdapterBank(out, in, storage='float32' | 'bfloat16'). apply() runs every row's adapter in one fused kernel
(rows grouped by adapter, each adapter's A and B read once); apply_loop() is the loop-over-adapters baseline.)")
      .def(py::init([](int64_t out_dim, int64_t in_dim, const std::string& storage) {
             if (storage != "float32" && storage != "bfloat16") value_error("storage: 'float32' or 'bfloat16', got '" + storage + "'");
             if (out_dim <= 0 || in_dim <= 0) value_error("AdapterBank: out and in must be positive");
             return Bank{tz::AdapterBank(out_dim, in_dim, storage == "float32" ? tz::DType::F32 : tz::DType::BF16), out_dim, in_dim};
           }),
           py::arg("out"), py::arg("in_"), py::arg("storage") = "float32")
      .def(
          "add",
          [](Bank& b, py::handle a_obj, py::handle b_obj, double alpha, bool rslora) {
            const ArrayView a = view(a_obj, "a", 2), bb = view(b_obj, "b", 2);
            expect_dim(a, "a", 1, b.in, "the bank's input width; a is PEFT's lora_A (r, in)");
            expect_dim(bb, "b", 0, b.out, "the bank's output width; b is PEFT's lora_B (out, r)");
            expect_dim(bb, "b", 1, a.shape[0], "the rank, a's rows");
            tz::LoraAdapter ad;
            ad.rank = a.shape[0];
            ad.alpha = float(alpha);
            ad.rslora = rslora;
            ad.a = to_f32(a);
            ad.b = to_f32(bb);
            return b.bank.add(ad);
          },
          py::arg("a"), py::arg("b"), py::arg("alpha"), py::arg("rslora") = false,
          "Adds an adapter (a: lora_A (r, in), b: lora_B (out, r), scale alpha / r, or alpha / sqrt(r) with rslora); returns its id.")
      .def(
          "remove", [](Bank& b, int32_t id) { b.bank.remove(id); }, py::arg("id"), "Frees an adapter; the others keep their ids.")
      .def(
          "apply",
          [](const Bank& b, py::handle x, py::handle ids, const py::object& y) {
            return run(b, x, ids, y, [&](const float* xp, int64_t n, const int32_t* ip, float* yp) { b.bank.apply(xp, n, ip, yp); });
          },
          py::arg("x"), py::arg("ids"), py::arg("y") = py::none(),
          "y[t] += s_i (x[t] @ A_i.T) @ B_i.T with i = ids[t] (-1: none). y (n, out) float32 is added to in place, or a new array.")
      .def(
          "apply_loop",
          [](const Bank& b, py::handle x, py::handle ids, const py::object& y) {
            return run(b, x, ids, y, [&](const float* xp, int64_t n, const int32_t* ip, float* yp) { b.bank.apply_loop(xp, n, ip, yp); });
          },
          py::arg("x"), py::arg("ids"), py::arg("y") = py::none(), "The same as apply(), as a loop over the adapters present (the baseline).")
      .def(
          "apply_with_base",
          [](const Bank& b, const LutW& w, py::handle x, py::handle ids) {
            if (!w.lut) value_error("apply_with_base: the base must be plain LutWeights (no AWQ scales, outliers or low-rank branch)");
            if (w.rows() != b.out || w.cols() != b.in) value_error("apply_with_base: the base's shape differs from the bank's");
            return run(b, x, ids, py::none(),
                       [&](const float* xp, int64_t n, const int32_t* ip, float* yp) { b.bank.apply_with_base(*w.lut, xp, n, ip, yp); });
          },
          py::arg("base"), py::arg("x"), py::arg("ids"), "y = x @ W.T (low-bit base through mpgemm) plus every row's adapter, one call.")
      .def_property_readonly("kernel", [](const Bank& b) { return std::string(b.bank.kernel()); })
      .def("__len__", [](const Bank& b) { return b.bank.size(); });
}

}  // namespace tzpy
