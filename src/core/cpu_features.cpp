// CPU feature detection: CPUID for what the silicon has, XGETBV for what the OS saves on context
// switch, and the Linux arch_prctl request for AMX tile data (without it the first tile load
// faults with SIGILL — the failure stock ggml hits on this kind of VM).
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/dispatch.h"
#include "tensorzip/cpu.h"
#include "tensorzip/error.h"

namespace tz {
namespace {

constexpr uint32_t kLevelAvx2 = kFma | kF16c | kAvx2 | kBmi2;
constexpr uint32_t kLevelAvx512 = kLevelAvx2 | kAvx512F | kAvx512BW | kAvx512VL | kAvx512DQ;
constexpr uint32_t kLevelAmx = kLevelAvx512 | kAmxTile;
// Extras that belong to a level: masked off when the cap is below it.
constexpr uint32_t kAvx2Family = kLevelAvx2 | kAvxVnni;
constexpr uint32_t kAvx512Family = kLevelAvx512 | kAvx512Vnni | kAvx512Bf16 | kAvx512Vbmi | kAvx512Fp16;
constexpr uint32_t kAmxFamily = kLevelAmx | kAmxBf16 | kAmxInt8;

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask & (1ul << kXfeatureXtiledata)) != 0;
#else
  return false;
#endif
}

Isa level_of(uint32_t f) {
  if ((f & kLevelAmx) == kLevelAmx) return Isa::Amx;
  if ((f & kLevelAvx512) == kLevelAvx512) return Isa::Avx512;
  if ((f & kLevelAvx2) == kLevelAvx2) return Isa::Avx2;
  return Isa::Scalar;
}

// Named caps: a level plus the extras it lets through. Finer than the levels so that every variant
// can be run on a machine that has more (avx2 without AVX-VNNI, AVX-512 without VNNI/VBMI/BF16).
struct IsaCap {
  const char* name;
  Isa level;
  uint32_t extras;
};
constexpr uint32_t kAllExtras = kAvxVnni | kAvx512Vnni | kAvx512Bf16 | kAvx512Vbmi | kAvx512Fp16 | kAmxBf16 | kAmxInt8;
constexpr IsaCap kCaps[] = {
    {"scalar", Isa::Scalar, 0},
    {"avx2", Isa::Avx2, 0},
    {"avxvnni", Isa::Avx2, kAvxVnni},
    {"avx512f", Isa::Avx512, kAvxVnni},
    {"avx512vnni", Isa::Avx512, kAvxVnni | kAvx512Vnni | kAvx512Vbmi},
    {"avx512", Isa::Avx512, kAllExtras},
    {"amx", Isa::Amx, kAllExtras},
};

const IsaCap& cap_named(const std::string& name) {
  for (const IsaCap& c : kCaps)
    if (name == c.name) return c;
  std::string all;
  for (const IsaCap& c : kCaps) all += std::string(all.empty() ? "" : ", ") + c.name;
  throw Error("TENSORZIP_ISA='" + name + "': expected one of " + all);
}

const IsaCap& cap_from_env(bool* capped) {
  const char* env = std::getenv("TENSORZIP_ISA");
  *capped = env != nullptr && *env != '\0';
  return cap_named(*capped ? env : "amx");
}

void apply_cap(CpuInfo& info, const IsaCap& cap) {
  info.active_isa = int(cap.level) < int(info.max_isa) ? cap.level : info.max_isa;
  info.cap = cap.name;
  info.cap_extras = cap.extras;
}

CpuInfo detect() {
  CpuInfo info;
  unsigned a, b, c, d;
  __cpuid(0, a, b, c, d);
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4), std::memcpy(vendor + 4, &d, 4), std::memcpy(vendor + 8, &c, 4);
  info.vendor = vendor;
  unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
  if (max_ext >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid(0x80000002u + i, a, b, c, d);
      std::memcpy(brand + 16 * i, &a, 4), std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4), std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    info.brand = brand;
    while (!info.brand.empty() && info.brand.back() == ' ') info.brand.pop_back();
  }

  uint32_t f = 0;
  __cpuid(1, a, b, c, d);
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = avx && (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;
  if (os_avx) {
    if (c & (1u << 12)) f |= kFma;
    if (c & (1u << 29)) f |= kF16c;
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    if (os_avx) {
      if (b & (1u << 5)) f |= kAvx2;
      if (b & (1u << 8)) f |= kBmi2;
    }
    if (os_avx512) {
      if (b & (1u << 16)) f |= kAvx512F;
      if (b & (1u << 17)) f |= kAvx512DQ;
      if (b & (1u << 30)) f |= kAvx512BW;
      if (b & (1u << 31)) f |= kAvx512VL;
      if (c & (1u << 1)) f |= kAvx512Vbmi;
      if (c & (1u << 11)) f |= kAvx512Vnni;
      if (d & (1u << 23)) f |= kAvx512Fp16;
    }
    const bool amx_tile = d & (1u << 24), amx_bf16 = d & (1u << 22), amx_int8 = d & (1u << 25);
    unsigned a1 = 0, b1, c1, d1;
    if (a >= 1) __cpuid_count(7, 1, a1, b1, c1, d1);
    if (os_avx && (a1 & (1u << 4))) f |= kAvxVnni;
    if (os_avx512 && (a1 & (1u << 5))) f |= kAvx512Bf16;
    if (amx_tile && os_amx) {
      info.amx_permission = request_amx_permission();
      if (info.amx_permission) {
        f |= kAmxTile;
        if (amx_bf16) f |= kAmxBf16;
        if (amx_int8) f |= kAmxInt8;
      }
    }
  }
  info.features = f;
  info.max_isa = level_of(f);
  apply_cap(info, cap_from_env(&info.capped));
  return info;
}

CpuInfo& mutable_info() {
  static CpuInfo info = detect();
  return info;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Amx: return "amx";
  }
  return "?";
}

Isa isa_from_name(const std::string& name) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx})
    if (name == isa_name(i)) return i;
  throw Error("ISA level '" + name + "': expected one of scalar, avx2, avx512, amx");
}

std::vector<std::string> isa_cap_names() {
  std::vector<std::string> out;
  for (const IsaCap& c : kCaps) out.push_back(c.name);
  return out;
}

uint32_t isa_level_features(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return 0;
    case Isa::Avx2: return kLevelAvx2;
    case Isa::Avx512: return kLevelAvx512;
    case Isa::Amx: return kLevelAmx;
  }
  return 0;
}

const CpuInfo& cpu_info() { return mutable_info(); }

uint32_t active_features() {
  const CpuInfo& info = cpu_info();
  uint32_t allowed = 0;
  if (int(info.active_isa) >= int(Isa::Avx2)) allowed |= kAvx2Family;
  if (int(info.active_isa) >= int(Isa::Avx512)) allowed |= kAvx512Family;
  if (int(info.active_isa) >= int(Isa::Amx)) allowed |= kAmxFamily;
  return info.features & allowed & (isa_level_features(info.active_isa) | info.cap_extras);
}

void reset_isa_cap_for_testing(const std::string& cap) {
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  const IsaCap& c = cap_named(cap);
  CpuInfo& info = mutable_info();
  info.capped = true;
  apply_cap(info, c);
  detail::bump_dispatch_epoch();
}

void reset_isa_cap_for_testing(Isa cap) { reset_isa_cap_for_testing(std::string(isa_name(cap))); }

std::vector<std::string> feature_names(uint32_t f) {
  static const std::pair<uint32_t, const char*> names[] = {
      {kFma, "fma"}, {kF16c, "f16c"}, {kAvx2, "avx2"}, {kBmi2, "bmi2"}, {kAvxVnni, "avx_vnni"},
      {kAvx512F, "avx512f"}, {kAvx512BW, "avx512bw"}, {kAvx512VL, "avx512vl"},
      {kAvx512DQ, "avx512dq"}, {kAvx512Vnni, "avx512_vnni"}, {kAvx512Bf16, "avx512_bf16"},
      {kAvx512Vbmi, "avx512_vbmi"}, {kAvx512Fp16, "avx512_fp16"}, {kAmxTile, "amx_tile"},
      {kAmxBf16, "amx_bf16"}, {kAmxInt8, "amx_int8"}};
  std::vector<std::string> out;
  for (auto& [bit, name] : names)
    if (f & bit) out.push_back(name);
  return out;
}

}  // namespace tz
