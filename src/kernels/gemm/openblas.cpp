// The library backend: OpenBLAS sgemm (the Debian libopenblas-openmp build). It picks its own
// kernels at load time (its "core type"); we only route to it when that core's ISA fits under the
// TENSORZIP_ISA cap, so a capped run really exercises our lower paths.
#include <cblas.h>

#include <atomic>
#include <string>

#include "kernels/gemm/gemm.h"
#include "tensorzip/cpu.h"
#include "tensorzip/runtime.h"

namespace tz::kernels {
namespace {

Isa openblas_core_isa() {
  const std::string core = openblas_get_corename();
  for (const char* name : {"SkylakeX", "Cooperlake", "SapphireRapids"})
    if (core.find(name) != std::string::npos) return Isa::Avx512;
  for (const char* name : {"Haswell", "Zen", "Skylake"})
    if (core.find(name) != std::string::npos) return Isa::Avx2;
  return Isa::Scalar;  // SSE-era kernels: baseline x86-64
}

void sync_threads() {
  static std::atomic<int> current{0};
  const int n = num_threads();
  if (current.exchange(n) != n) openblas_set_num_threads(n);
}

}  // namespace

bool openblas_kernels_fit_cap() {
  static const Isa core = openblas_core_isa();
  return int(core) <= int(cpu_info().active_isa);
}

void gemm_f32_f32_f32__openblas(const GemmF32Args& a) {
  if (a.n == 0 || a.m == 0) return;
  sync_threads();
  // Row-major Y (n,m) = X (n,k) @ W (m,k)^T
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(a.n), blasint(a.m), blasint(a.k), 1.0f,
              a.x, blasint(a.ldx), a.w, blasint(a.ldw), 0.0f, a.y, blasint(a.ldy));
}

}  // namespace tz::kernels

namespace tz {
std::string openblas_core_name() { return openblas_get_corename(); }
}  // namespace tz
