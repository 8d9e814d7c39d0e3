// Internal kernel registry (XNNPACK's gemm-config is the model). Each family declares one Config
// struct: its micro-kernel(s) with their real signatures, the tile geometry and whatever else the
// driver must know about the choice (lanes, crossovers, the layout a packer writes). The family's
// config.cpp lists its choices in preference order, each a Config plus the ISA level and extra
// features it needs; the first one the CPU and the TENSORZIP_ISA cap allow is chosen once and
// cached until the cap changes (tests change it). Drivers read config fields, never names.
//
// A choice's name is the symbol of its (main) micro-kernel, so `grep name` finds the kernel, its
// test and its benchmark. How to add a kernel: docs/kernels.md "Adding a kernel".
#pragma once
#include <atomic>
#include <initializer_list>
#include <vector>

#include "tensorzip/cpu.h"

namespace tz::detail {

// What a choice needs from the CPU (the part of a choice that is the same for every family).
struct ChoiceNeeds {
  const char* name;                // the micro-kernel's symbol
  Isa isa;                         // level (its features: isa_level_features)
  uint32_t extra_features;         // beyond the level's own (e.g. kAvx512Bf16)
  bool (*runtime_ok)() = nullptr;  // optional extra check (e.g. OpenBLAS's own core type)
};

// The type-erased half of a family: choosing, and introspection (tensorzip info, tests).
class KernelOp {
 public:
  const char* name() const { return name_; }
  size_t size() const { return needs_.size(); }
  const ChoiceNeeds& needs(size_t i) const { return needs_[i]; }
  bool available(size_t i) const;
  size_t chosen_index();
  const char* chosen_name() { return needs_[chosen_index()].name; }

 protected:
  explicit KernelOp(const char* name) : name_(name) {}
  ~KernelOp() = default;
  std::vector<ChoiceNeeds> needs_;

 private:
  const char* name_;
  std::atomic<int> cached_ = -1;
  std::atomic<unsigned> epoch_ = ~0u;
};

template <class Config>
struct Choice {
  const char* name;
  Isa isa;
  uint32_t extra_features;
  Config config;
  bool (*runtime_ok)() = nullptr;
};

template <class Config>
class KernelFamily final : public KernelOp {
 public:
  KernelFamily(const char* name, std::initializer_list<Choice<Config>> choices) : KernelOp(name) {
    for (const auto& c : choices) {
      needs_.push_back({c.name, c.isa, c.extra_features, c.runtime_ok});
      configs_.push_back(c.config);
    }
  }
  // The chosen config (a reference into the family: stable for the life of the process).
  const Config& config() { return configs_[chosen_index()]; }
  // The preferred available choice whose config satisfies `pred` (a caller with a constraint, e.g.
  // inside a pool task where a library's own thread pool must not run). Not cached.
  template <class Pred> const Config& config_if(Pred pred) const {
    for (size_t i = 0; i < configs_.size(); ++i)
      if (available(i) && pred(configs_[i])) return configs_[i];
    return configs_.back();  // every family ends in its scalar reference
  }

 private:
  std::vector<Config> configs_;
};

// Every family, for introspection (dispatch.cpp lists each family's accessor).
std::vector<KernelOp*> all_kernel_ops();
// Bumped when the ISA cap changes so cached choices are recomputed.
unsigned dispatch_epoch();
void bump_dispatch_epoch();

}  // namespace tz::detail
