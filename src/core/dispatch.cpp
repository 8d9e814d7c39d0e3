// Kernel choice: the first registered choice of each family the machine and the ISA cap allow.
#include "core/dispatch.h"

#include "kernels/convert/convert.h"
#include "kernels/fft/direct.h"
#include "kernels/fft/fft.h"
#include "kernels/fft/monarch.h"
#include "kernels/gemm/gemm.h"
#include "kernels/ggml/ggml_gemm.h"
#include "kernels/lora/lora.h"
#include "kernels/mpgemm/mpgemm.h"

#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"

namespace tz {
namespace detail {

std::vector<KernelOp*> all_kernel_ops() {
  return {&gemm_f32_family(), &gemm_bf16_family(), &convert_f32_bf16_family(), &convert_bf16_f32_family(),
          &convert_f32_f16_family(), &convert_f16_f32_family(), &mpgemm_lut_family(),
          &mpgemm_lut_tables_family(), &mpgemm_int8_family(), &mpgemm_dequant_family(),
          &fftconv_family(), &fftconv_bf16_family(), &fftconv_bf16_direct_family(), &lora_bgmv_family(),
          &ggml_gemm_family()};
}

namespace {
std::atomic<unsigned> g_epoch{0};
}
unsigned dispatch_epoch() { return g_epoch.load(std::memory_order_acquire); }
void bump_dispatch_epoch() { g_epoch.fetch_add(1, std::memory_order_acq_rel); }

bool KernelOp::available(size_t i) const {
  const ChoiceNeeds& v = needs_[i];
  const CpuInfo& info = cpu_info();
  if (int(v.isa) > int(info.active_isa)) return false;
  const uint32_t need = isa_level_features(v.isa) | v.extra_features;
  if ((active_features() & need) != need) return false;
  return v.runtime_ok == nullptr || v.runtime_ok();
}

size_t KernelOp::chosen_index() {
  const unsigned epoch = dispatch_epoch();
  int idx = cached_.load(std::memory_order_acquire);
  if (idx < 0 || epoch_.load(std::memory_order_acquire) != epoch) {
    idx = -1;
    for (size_t i = 0; i < needs_.size(); ++i)
      if (available(i)) { idx = int(i); break; }
    if (idx < 0) throw Error(std::string("no kernel variant of ") + name_ + " runs on this CPU");
    cached_.store(idx, std::memory_order_release);
    epoch_.store(epoch, std::memory_order_release);
  }
  return size_t(idx);
}

}  // namespace detail

std::vector<KernelOpInfo> kernel_dispatch_table() {
  std::vector<KernelOpInfo> out;
  for (detail::KernelOp* op : detail::all_kernel_ops()) {
    KernelOpInfo info{op->name(), op->chosen_name(), {}};
    for (size_t i = 0; i < op->size(); ++i)
      info.variants.push_back({op->needs(i).name, isa_name(op->needs(i).isa), op->available(i)});
    out.push_back(std::move(info));
  }
  return out;
}

std::string chosen_kernel(const std::string& op) {
  for (detail::KernelOp* k : detail::all_kernel_ops())
    if (op == k->name()) return k->chosen_name();
  throw Error("unknown kernel op '" + op + "'");
}

}  // namespace tz
