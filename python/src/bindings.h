// One function per topic adds its classes and functions to the module (module.cpp calls them).
#pragma once
#include <pybind11/pybind11.h>

namespace tzpy {
namespace py = pybind11;
void bind_runtime(py::module_& m);
void bind_fftconv(py::module_& m);
void bind_quant(py::module_& m);
void bind_decomp(py::module_& m);
void bind_adapters(py::module_& m);
void bind_model(py::module_& m);
}  // namespace tzpy
