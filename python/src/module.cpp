// The native half of the `tensorzip` Python package (python/tensorzip/__init__.py re-exports it).
#include <pybind11/stl.h>

#include "bindings.h"
#include "tensorzip/cpu.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tzpy {

void bind_runtime(py::module_& m) {
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
        py::gil_scoped_release nogil;
        tz::set_num_threads(n);
      },
      py::arg("n"), "Threads every kernel uses (default: all online cores). Not while another thread is inside a kernel.");
  m.def("num_threads", &tz::num_threads);
  m.def("hardware_threads", &tz::hardware_threads);
  m.def(
      "cpu_info",
      [] {
        const tz::CpuInfo& c = tz::cpu_info();
        py::dict d;
        d["vendor"] = c.vendor;
        d["brand"] = c.brand;
        d["features"] = tz::feature_names(c.features);
        d["amx_permission"] = c.amx_permission;
        d["max_isa"] = tz::isa_name(c.max_isa);
        d["active_isa"] = tz::isa_name(c.active_isa);
        d["isa_cap"] = c.capped ? py::object(py::str(c.cap)) : py::object(py::none());
        return d;
      },
      "The CPU as the kernels' dispatch sees it (TENSORZIP_ISA caps it).");
  // Library messages go to the `tensorzip` logger (the library never prints).
  tz::set_log_callback([](tz::LogLevel level, std::string_view msg) {
    if (!Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    try {
      static const char* names[] = {"debug", "info", "warning", "error"};
      py::module_::import("logging").attr("getLogger")("tensorzip").attr(names[int(level)])(std::string(msg));
    } catch (const py::error_already_set&) {
    }
  });
}

}  // namespace tzpy

PYBIND11_MODULE(_tensorzip, m) {
  m.doc() = "tensorzip's kernels: low-bit matmul, quantizers, decompositions, adapters, FFT convolution, LLaMA-family models";
  // tz::Error (bad arguments, bad files) is a ValueError subclass: callers catch either.
  pybind11::register_exception<tz::Error>(m, "Error", PyExc_ValueError);
  m.attr("__version__") = TENSORZIP_VERSION;
  tzpy::bind_runtime(m);
  tzpy::bind_fftconv(m);
  tzpy::bind_quant(m);
  tzpy::bind_decomp(m);
  tzpy::bind_adapters(m);
  tzpy::bind_model(m);
}
