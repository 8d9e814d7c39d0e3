// Low-rank and tensor decompositions (LoRD / FWSVD / ASVD, Tucker, CP, tensor-train).
//
// Matrices are row-major m x n. Every factorization reports its relative Frobenius error
// ‖A − Â‖/‖A‖, the parameter counts before and after, and the time it took. Float and double are
// both supported (LAPACK through Debian's OpenBLAS + LAPACKE); bad input (a rank larger than the
// dimensions, NaN, mode sizes that do not match) throws tz::Error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tz {

// How to pick the rank of a truncated factorization. Exactly one of the three is set.
struct RankSpec {
  int64_t rank = 0;          // > 0: this rank
  double energy = 0;         // in (0, 1]: the smallest rank keeping this fraction of Σ σ²
  double param_ratio = 0;    // in (0, 1]: the largest rank whose factors (m + n)·r have ≤ ratio·m·n
  static RankSpec of_rank(int64_t r) { return {r, 0, 0}; }
  static RankSpec of_energy(double e) { return {0, e, 0}; }
  static RankSpec of_param_ratio(double p) { return {0, 0, p}; }
};

struct DecompReport {
  std::string method;
  int64_t rank = 0;            // matrix rank (tensor methods: the largest rank)
  std::vector<int64_t> ranks;  // tensor methods: per mode / bond
  double rel_error = 0;        // ‖A − Â‖_F / ‖A‖_F (of the weighted matrix for weighted SVD)
  int64_t params_before = 0, params_after = 0;
  double seconds = 0;
  int iterations = 0;          // iterative methods
};

// A ≈ U · diag(S) · Vt: U m x r, Vt r x n (row-major). `spectrum` holds every singular value the
// method computed (all min(m, n) for the exact SVD).
template <class T>
struct Svd {
  int64_t m = 0, n = 0, rank = 0;
  std::vector<T> u, s, vt, spectrum;
  DecompReport report;
  std::vector<T> reconstruct() const;  // m x n
};

// Truncated SVD through LAPACK gesdd.
template <class T>
Svd<T> svd_truncated(const T* a, int64_t m, int64_t n, const RankSpec& spec);

// Randomized SVD (Halko, Martinsson, Tropp 2011): range finder with `oversample` extra columns and
// `power_iters` power iterations (re-orthonormalized each time), then the SVD of the small
// projection. The rank comes from spec.rank or spec.param_ratio (energy needs the full spectrum).
struct RandomizedSvdOptions {
  int64_t oversample = 10;
  int power_iters = 4;
  uint64_t seed = 0x5eed;
  // Measure ‖A − Â‖/‖A‖ for the report (one more m·n·r product); false leaves rel_error NaN.
  bool report_error = true;
  // float only: run the range finder (the first product and the power iterations) on bf16 copies
  // of A and Aᵀ, packed once for the bf16 GEMM (pair panels for AMX or AVX-512-BF16, fp32
  // accumulation); the projection B = QᵀA and everything after stay fp32. The subspace only has
  // to be found approximately: the error stays within 1 % of optimal (asserted; docs/benchmarks.md).
  bool bf16_range = false;
};
template <class T>
Svd<T> svd_randomized(const T* a, int64_t m, int64_t n, const RankSpec& spec, const RandomizedSvdOptions& opt = {});

// Weighted SVD: the best rank-r approximation in ‖diag(row_w)·(A − Â)·diag(col_w)‖_F — the SVD of
// the scaled matrix, unscaled again in U and Vt. col_w from activation statistics (ASVD: how much
// each input channel carries, see activation_col_weights), row_w from Fisher information per
// output (FWSVD: the sum of squared gradients of each weight row). Either may be null. The report's
// rel_error is that of the weighted matrix (what the method minimizes); reconstruct() gives Â.
template <class T>
Svd<T> svd_weighted(const T* a, int64_t m, int64_t n, const T* row_w, const T* col_w, const RankSpec& spec);

// Column weights from activations X [tokens x n] (inputs of y = x·Aᵀ... i.e. A's columns):
// sqrt(diag(XᵀX) / tokens), floored at 1e-6 of the largest so no column is dropped entirely.
std::vector<float> activation_col_weights(const float* x, int64_t tokens, int64_t n);

template <class T>
double relative_error(const T* a, const T* ahat, size_t count);

// ------------------------------------------------------------------------------ tensors
// A dense tensor, row-major (the last mode varies fastest), order 3 to 6.
template <class T>
struct DenseTensor {
  std::vector<int64_t> shape;
  std::vector<T> data;
  size_t size() const;
};

// Tucker: A ≈ G ×₁ U₁ ×₂ U₂ … (U_k: shape[k] x ranks[k], column-orthonormal), HOSVD start then
// HOOI sweeps until the fit changes by less than tol.
template <class T>
struct Tucker {
  DenseTensor<T> core;               // ranks
  std::vector<std::vector<T>> factors;  // U_k row-major shape[k] x ranks[k]
  DecompReport report;
  DenseTensor<T> reconstruct() const;
};
template <class T>
Tucker<T> tucker(const DenseTensor<T>& a, const std::vector<int64_t>& ranks, int max_iters = 20, double tol = 1e-10);

// CP: A ≈ Σ_r λ_r a¹_r ∘ a²_r ∘ …, alternating least squares with column normalization, stopping
// when the relative fit changes by less than tol.
template <class T>
struct Cp {
  int64_t rank = 0;
  std::vector<T> lambda;                // rank
  std::vector<std::vector<T>> factors;  // shape[k] x rank, row-major, unit columns
  DecompReport report;
  DenseTensor<T> reconstruct() const;
};
template <class T>
Cp<T> cp_als(const DenseTensor<T>& a, int64_t rank, int max_iters = 500, double tol = 1e-12, uint64_t seed = 1);

// Tensor train (TT-SVD): cores G_k of shape [r_{k-1}, n_k, r_k], r_0 = r_d = 1, truncated by a
// maximum bond rank and/or a relative error eps (split evenly over the d − 1 SVDs).
template <class T>
struct TensorTrain {
  std::vector<int64_t> shape, ranks;   // ranks: d + 1 bond dimensions
  std::vector<std::vector<T>> cores;
  DecompReport report;
  DenseTensor<T> reconstruct() const;
};
template <class T>
TensorTrain<T> tt_svd(const DenseTensor<T>& a, int64_t max_rank, double eps = 0);

// A weight matrix (out x in) as a matrix product operator (CompactifAI): out = Π o_k, in = Π i_k;
// the tensor with modes (o_1 i_1, o_2 i_2, …) decomposed by TT-SVD.
template <class T>
TensorTrain<T> mpo_from_matrix(const T* w, const std::vector<int64_t>& out_modes, const std::vector<int64_t>& in_modes,
                               int64_t max_rank, double eps = 0);
template <class T>
std::vector<T> mpo_to_matrix(const TensorTrain<T>& tt, const std::vector<int64_t>& out_modes,
                             const std::vector<int64_t>& in_modes);

}  // namespace tz
