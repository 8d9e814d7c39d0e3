// Allocation of large buffers: 2 MiB-aligned and marked for transparent huge pages (Linux,
// madvise), so first touch costs one fault per 2 MiB instead of per 4 KiB — for workspaces and
// packed weights of tens of MB that are filled once per call. Small sizes use 64-byte alignment.
#pragma once
#include <cstddef>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace tz {

void* alloc_large(size_t bytes);  // throws tz::Error when out of memory
void free_large(void* p) noexcept;

// Bytes this process can still allocate: the kernel's MemAvailable, capped by the headroom under
// RLIMIT_AS when one is set; SIZE_MAX when neither is known.
size_t available_memory();
// Throws tz::Error "<what> needs N MiB, only M MiB of memory are available" when `bytes` exceeds
// available_memory(): a size read from a file is checked before it is allocated and zeroed.
void require_memory(size_t bytes, const std::string& what);

template <class T>
struct LargeAllocator {
  using value_type = T;
  LargeAllocator() = default;
  template <class U> LargeAllocator(const LargeAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(alloc_large(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { free_large(p); }
  // resize(n) default-initializes (no zero fill): every user overwrites what it resizes, and
  // zeroing tens of MB per call cost as much as the packing that follows (assign(n, v) still fills).
  template <class U> void construct(U* p) noexcept { ::new (static_cast<void*>(p)) U; }
  template <class U, class... A> void construct(U* p, A&&... a) { ::new (static_cast<void*>(p)) U(std::forward<A>(a)...); }
  template <class U> bool operator==(const LargeAllocator<U>&) const { return true; }
};
template <class T> using LargeVector = std::vector<T, LargeAllocator<T>>;

}  // namespace tz
