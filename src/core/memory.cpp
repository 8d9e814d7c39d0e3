// See tensorzip/memory.h.
#include "tensorzip/memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <string>

#include "tensorzip/error.h"

namespace tz {

void* alloc_large(size_t bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t rounded = bytes == 0 ? align : (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
#ifdef MADV_HUGEPAGE
  if (huge) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return p;
}

void free_large(void* p) noexcept { std::free(p); }

}  // namespace tz
