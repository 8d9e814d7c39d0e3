// tensorzip.svd_truncated, svd_randomized, svd_weighted, tucker, cp, tensor_train: numpy factors
// from the library's decompositions (decompose.h), float32 or float64 as given.
#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"
#include "tensorzip/decompose.h"

namespace tzpy {
namespace {

template <class T>
constexpr Elem elem_of() {
  return sizeof(T) == 4 ? Elem::F32 : Elem::F64;
}

bool is_f64(const ArrayView& a, const char* name) {
  if (a.elem != Elem::F32 && a.elem != Elem::F64)
    type_error(std::string(name) + ": expected float32 or float64, got " + a.dtype_name);
  return a.elem == Elem::F64;
}

template <class T>
py::tuple svd_tuple(tz::Svd<T>&& s) {
  const int64_t m = s.m, n = s.n, r = s.rank;
  return py::make_tuple(from_vector(std::move(s.u), {m, r}), from_vector(std::move(s.s), {r}), from_vector(std::move(s.vt), {r, n}));
}

tz::RankSpec spec_of(const py::object& rank, const py::object& energy) {
  if (rank.is_none() == energy.is_none()) value_error("give exactly one of rank= and energy=");
  if (!rank.is_none()) {
    const auto r = rank.cast<int64_t>();
    if (r <= 0) value_error("rank: must be positive, got " + std::to_string(r));
    return tz::RankSpec::of_rank(r);
  }
  return tz::RankSpec::of_energy(energy.cast<double>());
}

py::tuple svd_truncated(py::handle a_obj, const py::object& rank, const py::object& energy) {
  const ArrayView a = view(a_obj, "a", 2);
  const tz::RankSpec spec = spec_of(rank, energy);
  if (is_f64(a, "a")) {
    tz::Svd<double> s;
    {
      py::gil_scoped_release nogil;
      s = tz::svd_truncated(a.ptr<double>(), a.shape[0], a.shape[1], spec);
    }
    return svd_tuple(std::move(s));
  }
  tz::Svd<float> s;
  {
    py::gil_scoped_release nogil;
    s = tz::svd_truncated(a.ptr<float>(), a.shape[0], a.shape[1], spec);
  }
  return svd_tuple(std::move(s));
}

py::tuple svd_randomized(py::handle a_obj, int64_t rank, int64_t oversample, int power_iters, uint64_t seed, bool bf16_range) {
  const ArrayView a = view(a_obj, "a", 2);
  if (rank <= 0) value_error("rank: must be positive, got " + std::to_string(rank));
  tz::RandomizedSvdOptions o;
  o.oversample = oversample;
  o.power_iters = power_iters;
  o.seed = seed;
  o.report_error = false;
  o.bf16_range = bf16_range;
  if (is_f64(a, "a")) {
    if (bf16_range) value_error("bf16_range: only for float32 input");
    tz::Svd<double> s;
    {
      py::gil_scoped_release nogil;
      s = tz::svd_randomized(a.ptr<double>(), a.shape[0], a.shape[1], tz::RankSpec::of_rank(rank), o);
    }
    return svd_tuple(std::move(s));
  }
  tz::Svd<float> s;
  {
    py::gil_scoped_release nogil;
    s = tz::svd_randomized(a.ptr<float>(), a.shape[0], a.shape[1], tz::RankSpec::of_rank(rank), o);
  }
  return svd_tuple(std::move(s));
}

template <class T>
py::tuple svd_weighted_t(const ArrayView& a, int64_t rank, const py::object& row_w, const py::object& col_w) {
  std::optional<ArrayView> rw, cw;
  if (!row_w.is_none()) {
    rw = view_as(row_w, "row_w", elem_of<T>(), 1);
    expect_dim(*rw, "row_w", 0, a.shape[0], "a's rows");
  }
  if (!col_w.is_none()) {
    cw = view_as(col_w, "col_w", elem_of<T>(), 1);
    expect_dim(*cw, "col_w", 0, a.shape[1], "a's columns");
  }
  tz::Svd<T> s;
  {
    py::gil_scoped_release nogil;
    s = tz::svd_weighted(a.ptr<T>(), a.shape[0], a.shape[1], rw ? rw->ptr<T>() : nullptr, cw ? cw->ptr<T>() : nullptr,
                         tz::RankSpec::of_rank(rank));
  }
  return svd_tuple(std::move(s));
}

template <class T>
tz::DenseTensor<T> dense_of(const ArrayView& a) {
  if (a.ndim() < 3 || a.ndim() > 6) value_error("t: expected a tensor of order 3 to 6, got shape " + a.shape_str());
  tz::DenseTensor<T> t;
  t.shape = a.shape;
  t.data.assign(a.ptr<T>(), a.ptr<T>() + a.size());
  return t;
}

template <class T>
py::list matrices(std::vector<std::vector<T>>&& fs, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols) {
  py::list l;
  for (size_t k = 0; k < fs.size(); ++k) l.append(from_vector(std::move(fs[k]), {rows[k], cols[k]}));
  return l;
}

template <class T>
py::tuple tucker_t(const ArrayView& a, const std::vector<int64_t>& ranks, int max_iters, double tol) {
  tz::DenseTensor<T> t = dense_of<T>(a);
  if (ranks.size() != t.shape.size())
    value_error("ranks: one per mode, " + std::to_string(t.shape.size()) + " modes, got " + std::to_string(ranks.size()));
  tz::Tucker<T> r;
  {
    py::gil_scoped_release nogil;
    r = tz::tucker(t, ranks, max_iters, tol);
  }
  py::array core = from_vector(std::move(r.core.data), r.core.shape);
  return py::make_tuple(core, matrices(std::move(r.factors), t.shape, ranks));
}

template <class T>
py::tuple cp_t(const ArrayView& a, int64_t rank, int max_iters, double tol, uint64_t seed) {
  tz::DenseTensor<T> t = dense_of<T>(a);
  if (rank <= 0) value_error("rank: must be positive, got " + std::to_string(rank));
  tz::Cp<T> r;
  {
    py::gil_scoped_release nogil;
    r = tz::cp_als(t, rank, max_iters, tol, seed);
  }
  py::array lambda = from_vector(std::move(r.lambda), {rank});
  return py::make_tuple(lambda, matrices(std::move(r.factors), t.shape, std::vector<int64_t>(t.shape.size(), rank)));
}

template <class T>
py::list tt_t(const ArrayView& a, int64_t max_rank, double eps) {
  tz::DenseTensor<T> t = dense_of<T>(a);
  tz::TensorTrain<T> r;
  {
    py::gil_scoped_release nogil;
    r = tz::tt_svd(t, max_rank, eps);
  }
  py::list cores;
  for (size_t k = 0; k < r.cores.size(); ++k) cores.append(from_vector(std::move(r.cores[k]), {r.ranks[k], r.shape[k], r.ranks[k + 1]}));
  return cores;
}

}  // namespace

void bind_decomp(py::module_& m) {
  m.def("svd_truncated", &svd_truncated, py::arg("a"), py::arg("rank") = py::none(), py::arg("energy") = py::none(),
        R"(Truncated SVD through LAPACK gesdd: a (m, n) ~ u @ diag(s) @ vt, u (m, r), s (r,), vt (r, n).

Give rank=r, or energy=e in (0, 1] for the smallest rank keeping that fraction of sum(s**2).)");
  m.def("svd_randomized", &svd_randomized, py::arg("a"), py::arg("rank"), py::arg("oversample") = 10, py::arg("power_iters") = 4,
        py::arg("seed") = 0x5eed, py::arg("bf16_range") = false,
        R"(Randomized SVD (Halko, Martinsson, Tropp): (u, s, vt) of rank `rank`, float32 or float64 as a is.

bf16_range: float32 only, run the range finder on bf16 copies (AMX / AVX-512-BF16); error within 1% of optimal.)");
  m.def(
      "svd_weighted",
      [](py::handle a_obj, int64_t rank, const py::object& row_w, const py::object& col_w) {
        const ArrayView a = view(a_obj, "a", 2);
        if (rank <= 0) value_error("rank: must be positive, got " + std::to_string(rank));
        return is_f64(a, "a") ? svd_weighted_t<double>(a, rank, row_w, col_w) : svd_weighted_t<float>(a, rank, row_w, col_w);
      },
      py::arg("a"), py::arg("rank"), py::arg("row_w") = py::none(), py::arg("col_w") = py::none(),
      R"(Weighted SVD (FWSVD / ASVD): the best rank-r approximation in ||diag(row_w) (a - u s vt) diag(col_w)||_F.)");
  m.def(
      "tucker",
      [](py::handle t_obj, const std::vector<int64_t>& ranks, int max_iters, double tol) {
        const ArrayView a = view(t_obj, "t");
        return is_f64(a, "t") ? tucker_t<double>(a, ranks, max_iters, tol) : tucker_t<float>(a, ranks, max_iters, tol);
      },
      py::arg("t"), py::arg("ranks"), py::arg("max_iters") = 20, py::arg("tol") = 1e-10,
      R"(Tucker (HOSVD + HOOI) of a tensor of order 3..6: (core, factors), core of shape ranks, factors[k] (shape[k], ranks[k]).)");
  m.def(
      "cp",
      [](py::handle t_obj, int64_t rank, int max_iters, double tol, uint64_t seed) {
        const ArrayView a = view(t_obj, "t");
        return is_f64(a, "t") ? cp_t<double>(a, rank, max_iters, tol, seed) : cp_t<float>(a, rank, max_iters, tol, seed);
      },
      py::arg("t"), py::arg("rank"), py::arg("max_iters") = 500, py::arg("tol") = 1e-12, py::arg("seed") = 1,
      R"(CP by alternating least squares: (weights (rank,), factors), factors[k] (shape[k], rank) with unit columns.)");
  m.def(
      "tensor_train",
      [](py::handle t_obj, int64_t max_rank, double eps) {
        const ArrayView a = view(t_obj, "t");
        return is_f64(a, "t") ? tt_t<double>(a, max_rank, eps) : tt_t<float>(a, max_rank, eps);
      },
      py::arg("t"), py::arg("max_rank"), py::arg("eps") = 0.0,
      R"(Tensor train (TT-SVD): a list of cores (r[k-1], shape[k], r[k]), bond ranks at most max_rank and/or relative error eps.)");
}

}  // namespace tzpy
