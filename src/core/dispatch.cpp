// Kernel choice: the first registered variant the machine and the ISA cap allow.
#include "core/dispatch.h"

#include "tensorzip/dispatch.h"
#include "tensorzip/error.h"

namespace tz {
namespace detail {

// Each family exposes its ops through an accessor (function-local statics: no init-order issues).
KernelOp& gemm_f32_op();
KernelOp& gemm_bf16_op();
KernelOp& convert_f32_bf16_op();
KernelOp& convert_bf16_f32_op();
KernelOp& convert_f32_f16_op();
KernelOp& convert_f16_f32_op();
KernelOp& mpgemm_lut_op();
KernelOp& mpgemm_lut_tables_op();
KernelOp& mpgemm_dequant_op();
KernelOp& mpgemm_int8_op();
KernelOp& fftconv_op();
KernelOp& fftconv_bf16_op();
KernelOp& fftconv_bf16_direct_op();
KernelOp& lora_bgmv_op();
KernelOp& ggml_gemm_op();

std::vector<KernelOp*> all_kernel_ops() {
  return {&gemm_f32_op(), &gemm_bf16_op(), &convert_f32_bf16_op(), &convert_bf16_f32_op(),
          &convert_f32_f16_op(), &convert_f16_f32_op(), &mpgemm_lut_op(),
          &mpgemm_lut_tables_op(), &mpgemm_int8_op(), &mpgemm_dequant_op(),
          &fftconv_op(), &fftconv_bf16_op(), &fftconv_bf16_direct_op(), &lora_bgmv_op(), &ggml_gemm_op()};
}

namespace {
std::atomic<unsigned> g_epoch{0};
}
unsigned dispatch_epoch() { return g_epoch.load(std::memory_order_acquire); }
void bump_dispatch_epoch() { g_epoch.fetch_add(1, std::memory_order_acq_rel); }

KernelOp::KernelOp(const char* name, std::initializer_list<Variant> variants)
    : name_(name), variants_(variants) {}

bool KernelOp::available(const Variant& v) const {
  const CpuInfo& info = cpu_info();
  if (int(v.isa) > int(info.active_isa)) return false;
  const uint32_t need = isa_level_features(v.isa) | v.extra_features;
  if ((active_features() & need) != need) return false;
  return v.runtime_ok == nullptr || v.runtime_ok();
}

const Variant& KernelOp::chosen() {
  const unsigned epoch = dispatch_epoch();
  int idx = cached_.load(std::memory_order_acquire);
  if (idx < 0 || epoch_.load(std::memory_order_acquire) != epoch) {
    idx = -1;
    for (size_t i = 0; i < variants_.size(); ++i)
      if (available(variants_[i])) { idx = int(i); break; }
    if (idx < 0) throw Error(std::string("no kernel variant of ") + name_ + " runs on this CPU");
    cached_.store(idx, std::memory_order_release);
    epoch_.store(epoch, std::memory_order_release);
  }
  return variants_[size_t(idx)];
}

}  // namespace detail

std::vector<KernelOpInfo> kernel_dispatch_table() {
  std::vector<KernelOpInfo> out;
  for (detail::KernelOp* op : detail::all_kernel_ops()) {
    KernelOpInfo info{op->name(), op->chosen().name, {}};
    for (const auto& v : op->variants())
      info.variants.push_back({v.name, isa_name(v.isa), op->available(v)});
    out.push_back(std::move(info));
  }
  return out;
}

std::string chosen_kernel(const std::string& op) {
  for (detail::KernelOp* k : detail::all_kernel_ops())
    if (op == k->name()) return k->chosen().name;
  throw Error("unknown kernel op '" + op + "'");
}

}  // namespace tz
