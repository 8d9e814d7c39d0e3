// See tensorzip/memory.h.
#include "tensorzip/memory.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include <algorithm>
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

size_t available_memory() {
  size_t avail = SIZE_MAX;
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kib = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
        avail = size_t(kib) * 1024;
        break;
      }
    std::fclose(f);
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    size_t used = 0;  // virtual size now, from /proc/self/statm (pages)
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      unsigned long long pages = 0;
      if (std::fscanf(f, "%llu", &pages) == 1) used = size_t(pages) * size_t(sysconf(_SC_PAGESIZE));
      std::fclose(f);
    }
    const size_t room = size_t(lim.rlim_cur) > used ? size_t(lim.rlim_cur) - used : 0;
    avail = std::min(avail, room);
  }
  return avail;
}

void require_memory(size_t bytes, const std::string& what) {
  const size_t avail = available_memory();
  if (bytes <= avail) return;
  const auto mib = [](size_t b) { return std::to_string((b + (size_t(1) << 20) - 1) >> 20); };
  throw Error(what + " needs " + mib(bytes) + " MiB, only " + mib(avail) + " MiB of memory are available");
}

}  // namespace tz
