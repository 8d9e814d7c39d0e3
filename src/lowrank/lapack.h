// Typed wrappers over OpenBLAS (cblas) and LAPACKE for the decompositions, row-major throughout,
// for float and double. BLAS threads follow the tensorzip pool size.
#pragma once
#include <cblas.h>
#include <lapacke.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tensorzip/error.h"

namespace tz::lowrank {

void sync_blas_threads();
// BLAS calls use n threads while this lives (1: callers that run their own threads, each calling
// BLAS on small matrices). Not for use while another thread is inside BLAS.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int n);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int saved_;
};

// C (m x n) = alpha · op(A) · op(B) + beta · C.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float beta, float* c, int64_t ldc) {
  sync_blas_threads();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(m), blasint(n),
              blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  sync_blas_threads();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(m), blasint(n),
              blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

// Thin SVD of a (m x n, overwritten): u m x k, s k, vt k x n, k = min(m, n).
inline void gesdd(int64_t m, int64_t n, float* a, float* s, float* u, float* vt) {
  sync_blas_threads();
  const int64_t k = std::min(m, n);
  const lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', lapack_int(m), lapack_int(n), a, lapack_int(n), s, u,
                                         lapack_int(k), vt, lapack_int(n));
  require(info == 0, "svd: LAPACK sgesdd failed (info " + std::to_string(info) + ")");
}
inline void gesdd(int64_t m, int64_t n, double* a, double* s, double* u, double* vt) {
  sync_blas_threads();
  const int64_t k = std::min(m, n);
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', lapack_int(m), lapack_int(n), a, lapack_int(n), s, u,
                                         lapack_int(k), vt, lapack_int(n));
  require(info == 0, "svd: LAPACK dgesdd failed (info " + std::to_string(info) + ")");
}

// Symmetric a (n x n row-major) <- its eigenvectors (columns), w <- eigenvalues ascending.
template <class T>
inline void syevd(int64_t n, T* a, T* w, const char* what) {
  sync_blas_threads();
  lapack_int info;
  if constexpr (sizeof(T) == 4) info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', lapack_int(n), a, lapack_int(n), w);
  else info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', lapack_int(n), a, lapack_int(n), w);
  require(info == 0, std::string(what) + ": LAPACK eigendecomposition failed (info " + std::to_string(info) + ")");
}

// a (m x l row-major, m >= l) <- an orthonormal basis of its columns. Row-major m x l is
// column-major l x m (its transpose), so this is an LQ factorization in LAPACK's own layout — no
// transposed copies.
inline void orthonormalize(int64_t m, int64_t l, float* a) {
  sync_blas_threads();
  std::vector<float> tau(static_cast<size_t>(l));
  lapack_int info = LAPACKE_sgelqf(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), a, lapack_int(l), tau.data());
  if (info == 0) info = LAPACKE_sorglq(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), lapack_int(l), a, lapack_int(l), tau.data());
  require(info == 0, "svd: LAPACK LQ failed (info " + std::to_string(info) + ")");
}
inline void orthonormalize(int64_t m, int64_t l, double* a) {
  sync_blas_threads();
  std::vector<double> tau(static_cast<size_t>(l));
  lapack_int info = LAPACKE_dgelqf(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), a, lapack_int(l), tau.data());
  if (info == 0) info = LAPACKE_dorglq(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), lapack_int(l), a, lapack_int(l), tau.data());
  require(info == 0, "svd: LAPACK LQ failed (info " + std::to_string(info) + ")");
}

// a (m x l row-major) <- a well-conditioned basis of the same column space, cheaper than QR: the
// U factor of the LU factorization of aᵀ (column-major l x m, LAPACK's layout for this memory),
// transposed back — the normalization fbpca uses between power iterations.
template <class T>
inline void lu_basis(int64_t m, int64_t l, T* a) {
  sync_blas_threads();
  std::vector<lapack_int> piv(static_cast<size_t>(l));
  lapack_int info;
  if constexpr (sizeof(T) == 4) info = LAPACKE_sgetrf(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), a, lapack_int(l), piv.data());
  else info = LAPACKE_dgetrf(LAPACK_COL_MAJOR, lapack_int(l), lapack_int(m), a, lapack_int(l), piv.data());
  require(info >= 0, "svd: LAPACK LU failed (info " + std::to_string(info) + ")");
  for (int64_t j = 0; j < l; ++j)  // drop L (strictly below the diagonal of the first l columns)
    for (int64_t i = j + 1; i < l; ++i) a[i + j * l] = T(0);
}

// a: column-major m x l (m >= l) <- a basis of the same column space: P·L from its LU
// factorization (unit lower trapezoidal L, rows put back in the original order).
inline void lu_basis_colmajor(int64_t m, int64_t l, float* a) {
  sync_blas_threads();
  std::vector<lapack_int> piv(static_cast<size_t>(l));
  const lapack_int info = LAPACKE_sgetrf(LAPACK_COL_MAJOR, lapack_int(m), lapack_int(l), a, lapack_int(m), piv.data());
  require(info >= 0, "svd: LAPACK LU failed (info " + std::to_string(info) + ")");
  for (int64_t j = 0; j < l; ++j) {
    for (int64_t i = 0; i < j; ++i) a[i + j * m] = 0.f;
    a[j + j * m] = 1.f;
  }
  LAPACKE_slaswp(LAPACK_COL_MAJOR, lapack_int(l), a, lapack_int(m), 1, lapack_int(l), piv.data(), -1);
}
// a: column-major m x l <- Q of its QR factorization (orthonormal columns).
inline void qr_colmajor(int64_t m, int64_t l, float* a) {
  sync_blas_threads();
  std::vector<float> tau(static_cast<size_t>(l));
  lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, lapack_int(m), lapack_int(l), a, lapack_int(m), tau.data());
  if (info == 0) info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, lapack_int(m), lapack_int(l), lapack_int(l), a, lapack_int(m), tau.data());
  require(info == 0, "svd: LAPACK QR failed (info " + std::to_string(info) + ")");
}

}  // namespace tz::lowrank
