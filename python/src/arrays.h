// Arrays in and out of the Python module. Inputs are numpy arrays (buffer protocol) or CPU torch
// tensors (read through data_ptr: no copy, and bf16 works, which numpy lacks); they must be
// C-contiguous and of the dtype asked for, else a TypeError / ValueError naming the argument and
// what to do. Outputs are new numpy arrays, handed back as torch tensors (torch.from_numpy, no
// copy) when the call's first array argument was a tensor: numpy in, numpy out; torch in, torch out.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tzpy {
namespace py = pybind11;

enum class Elem { F32, F64, F16, BF16, I32, I64, U8, Bool, Other };
const char* elem_name(Elem e);

// A read-only view of a contiguous array; `owner` keeps it alive while the view is used.
struct ArrayView {
  py::object owner;
  std::string name;  // the argument's name (error messages)
  const void* data = nullptr;
  Elem elem = Elem::Other;
  std::string dtype_name;  // as the caller's library spells it (error messages)
  std::vector<int64_t> shape;
  bool torch = false;
  int ndim() const { return int(shape.size()); }
  int64_t size() const;
  std::string shape_str() const;
  template <class T>
  const T* ptr() const { return static_cast<const T*>(data); }
};

// Views `obj` (argument `name`). ndim >= 0 demands that many dimensions.
ArrayView view(py::handle obj, const char* name, int ndim = -1);
// The same, demanding element type `want` (F32 also takes nothing else: no silent copies).
ArrayView view_as(py::handle obj, const char* name, Elem want, int ndim = -1);
// A float32 copy of a float array of any width (f16, bf16, f64) or the f32 data itself.
std::vector<float> to_f32(const ArrayView& v);
// Throws ValueError "NAME: expected shape (...), got (...)" unless v's dimension d is `size`.
void expect_dim(const ArrayView& v, const char* name, int d, int64_t size, const char* what);

// A new, zero-filled C-contiguous array.
py::array_t<float> new_f32(const std::vector<int64_t>& shape);
// A new C-contiguous array left uninitialized: for outputs a kernel writes whole.
template <class T>
py::array_t<T> new_output(const std::vector<int64_t>& shape) {
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}
template <class T>
py::array_t<T> new_array(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array_t<T> a(s);
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
  return a;
}
// `a` as the caller's kind: a torch tensor (zero-copy) when `torch`, else the numpy array.
py::object out(py::array a, bool torch);

// A numpy array that owns `v` (moved, no copy).
template <class T>
py::array_t<T> from_vector(std::vector<T>&& v, const std::vector<int64_t>& shape) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<T>(s, heap->data(), owner);
}

[[noreturn]] void value_error(const std::string& msg);
[[noreturn]] void type_error(const std::string& msg);

}  // namespace tzpy
