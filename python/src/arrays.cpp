#include "arrays.h"

#include <algorithm>
#include <cstring>

#include "tensorzip/convert.h"

namespace tzpy {

const char* elem_name(Elem e) {
  switch (e) {
    case Elem::F32: return "float32";
    case Elem::F64: return "float64";
    case Elem::F16: return "float16";
    case Elem::BF16: return "bfloat16";
    case Elem::I32: return "int32";
    case Elem::I64: return "int64";
    case Elem::U8: return "uint8";
    case Elem::Bool: return "bool";
    default: return "other";
  }
}

void value_error(const std::string& msg) { throw py::value_error(msg); }
void type_error(const std::string& msg) { throw py::type_error(msg); }

int64_t ArrayView::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ArrayView::shape_str() const {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

// From the dtype's C fields (kind, itemsize): dtype.name is a Python-level property, slow on
// every call. Only a kind-'V' dtype (ml_dtypes' bfloat16) is looked up by name.
Elem numpy_elem(const py::dtype& dt) {
  const char k = dt.kind();
  const auto sz = dt.itemsize();
  if (k == 'f') return sz == 4 ? Elem::F32 : sz == 8 ? Elem::F64 : sz == 2 ? Elem::F16 : Elem::Other;
  if (k == 'i') return sz == 4 ? Elem::I32 : sz == 8 ? Elem::I64 : Elem::Other;
  if (k == 'u') return sz == 1 ? Elem::U8 : Elem::Other;
  if (k == 'b') return Elem::Bool;
  if (k == 'V' && sz == 2 && std::string(py::str(dt.attr("name"))) == "bfloat16") return Elem::BF16;
  return Elem::Other;
}

Elem torch_elem(const std::string& name) {
  if (name == "torch.float32") return Elem::F32;
  if (name == "torch.float64") return Elem::F64;
  if (name == "torch.float16") return Elem::F16;
  if (name == "torch.bfloat16") return Elem::BF16;
  if (name == "torch.int32") return Elem::I32;
  if (name == "torch.int64") return Elem::I64;
  if (name == "torch.uint8") return Elem::U8;
  if (name == "torch.bool") return Elem::Bool;
  return Elem::Other;
}

bool is_torch_tensor(py::handle obj) {
  const std::string mod = py::str(py::type::handle_of(obj).attr("__module__"));
  return mod.rfind("torch", 0) == 0 && py::hasattr(obj, "data_ptr") && py::hasattr(obj, "is_contiguous");
}

}  // namespace

ArrayView view(py::handle obj, const char* name, int ndim) {
  ArrayView v;
  v.owner = py::reinterpret_borrow<py::object>(obj);
  v.name = name;
  if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!(a.flags() & py::array::c_style))
      value_error(std::string(name) + ": the array is not C-contiguous (a transpose or a strided slice); pass np.ascontiguousarray(" +
                  name + ")");
    const py::dtype dt = a.dtype();
    if (dt.byteorder() == '>')  // big-endian data on this little-endian machine
      type_error(std::string(name) + ": byte-swapped arrays are not supported; pass " + name + ".astype(" + name +
                 ".dtype.newbyteorder('='))");
    v.elem = numpy_elem(dt);
    v.dtype_name = v.elem != Elem::Other ? std::string(elem_name(v.elem)) : std::string(py::str(dt.attr("name")));
    v.data = a.data();
    for (py::ssize_t i = 0; i < a.ndim(); ++i) v.shape.push_back(int64_t(a.shape(i)));
  } else if (is_torch_tensor(obj)) {
    const std::string device = py::str(obj.attr("device").attr("type"));
    if (device != "cpu") value_error(std::string(name) + ": the tensor is on " + device + "; tensorzip runs on the CPU (" + name + ".cpu())");
    if (!obj.attr("is_contiguous")().cast<bool>())
      value_error(std::string(name) + ": the tensor is not contiguous; pass " + name + ".contiguous()");
    v.dtype_name = py::str(obj.attr("dtype"));
    v.elem = torch_elem(v.dtype_name);
    v.data = reinterpret_cast<const void*>(obj.attr("data_ptr")().cast<uintptr_t>());
    for (auto d : obj.attr("shape")) v.shape.push_back(d.cast<int64_t>());
    v.torch = true;
  } else {
    type_error(std::string(name) + ": expected a numpy array or a torch tensor, got " +
               std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  if (ndim >= 0 && v.ndim() != ndim)
    value_error(std::string(name) + ": expected " + std::to_string(ndim) + " dimensions, got shape " + v.shape_str());
  for (int64_t d : v.shape)
    if (d == 0) value_error(std::string(name) + ": empty array, shape " + v.shape_str());
  return v;
}

ArrayView view_as(py::handle obj, const char* name, Elem want, int ndim) {
  ArrayView v = view(obj, name, ndim);
  if (v.elem != want)
    type_error(std::string(name) + ": expected " + elem_name(want) + ", got " + v.dtype_name + " (convert with " +
               (v.torch ? std::string(".to(torch.") + elem_name(want) + ")" : std::string(".astype(np.") + elem_name(want) + ")") + ")");
  return v;
}

std::vector<float> to_f32(const ArrayView& v) {
  const size_t n = size_t(v.size());
  std::vector<float> f(n);
  switch (v.elem) {
    case Elem::F32: std::memcpy(f.data(), v.data, n * 4); break;
    case Elem::F64: std::transform(v.ptr<double>(), v.ptr<double>() + n, f.begin(), [](double x) { return float(x); }); break;
    case Elem::F16: tz::f16_to_f32(v.ptr<uint16_t>(), f.data(), n); break;
    case Elem::BF16: tz::bf16_to_f32(v.ptr<uint16_t>(), f.data(), n); break;
    default: type_error(v.name + ": expected float32 (or float16, bfloat16, float64, converted), got " + v.dtype_name);
  }
  return f;
}

void expect_dim(const ArrayView& v, const char* name, int d, int64_t size, const char* what) {
  if (v.shape[size_t(d)] != size)
    value_error(std::string(name) + ": dimension " + std::to_string(d) + " is " + std::to_string(v.shape[size_t(d)]) + ", expected " +
                std::to_string(size) + " (" + what + "); shape " + v.shape_str());
}

py::array_t<float> new_f32(const std::vector<int64_t>& shape) { return new_array<float>(shape); }

py::object out(py::array a, bool torch) {
  if (!torch) return a;
  return py::module_::import("torch").attr("from_numpy")(a);
}

}  // namespace tzpy
