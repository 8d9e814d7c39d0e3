// Internal kernel registry. Each family's config.cpp owns one KernelOp per op: its variants in
// preference order, each with the ISA level and extra features it needs. The first variant the
// active ISA allows is chosen once and cached until the cap changes (tests change it).
#pragma once
#include <atomic>
#include <initializer_list>
#include <vector>

#include "tensorzip/cpu.h"

namespace tz::detail {

using AnyFn = void (*)();

struct Variant {
  const char* name;
  Isa isa;
  uint32_t extra_features;   // beyond the level's own (e.g. kAvx512Bf16)
  AnyFn fn;
  bool (*runtime_ok)() = nullptr;  // optional extra check (e.g. OpenBLAS's own core type)
};

class KernelOp {
 public:
  KernelOp(const char* name, std::initializer_list<Variant> variants);
  const char* name() const { return name_; }
  const std::vector<Variant>& variants() const { return variants_; }
  bool available(const Variant& v) const;
  const Variant& chosen();
  template <class F> F get() { return reinterpret_cast<F>(chosen().fn); }

 private:
  const char* name_;
  std::vector<Variant> variants_;
  std::atomic<int> cached_ = -1;
  std::atomic<unsigned> epoch_ = ~0u;
};

// Every op, for introspection (defined in dispatch.cpp from each family's accessor).
std::vector<KernelOp*> all_kernel_ops();
// Bumped when the ISA cap changes so cached choices are recomputed.
unsigned dispatch_epoch();
void bump_dispatch_epoch();

template <class F> AnyFn to_any(F f) { return reinterpret_cast<AnyFn>(f); }

}  // namespace tz::detail
