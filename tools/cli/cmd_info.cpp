// `tensorzip info [--json]`: detected CPU features, the ISA level in force, threads, the BLAS
// backend, and the kernel each op dispatches to.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "core/json.h"
#include "tensorzip/cpu.h"
#include "tensorzip/dispatch.h"
#include "tensorzip/gemm.h"
#include "tensorzip/runtime.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace tz::cli {

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show CPU features, active ISA and the kernel chosen per op");
  static bool json = false;
  cmd->add_flag("--json", json, "One JSON object instead of text");
  add_threads_option(cmd);
  cmd->callback([] {
    const CpuInfo& c = cpu_info();
    const auto table = kernel_dispatch_table();
    if (json) {
      nlohmann::ordered_json j;
      j["version"] = "0.1.0";
      j["cpu"] = {{"vendor", c.vendor}, {"brand", c.brand}, {"features", feature_names(c.features)}};
      j["amx_permission"] = c.amx_permission;
      j["max_isa"] = isa_name(c.max_isa);
      j["active_isa"] = isa_name(c.active_isa);
      j["isa_capped"] = c.capped;
      j["isa_cap"] = c.cap;
      j["threads"] = num_threads();
      j["hardware_threads"] = hardware_threads();
      j["blas"] = {{"library", "OpenBLAS"}, {"core", openblas_core_name()}};
      auto ops = nlohmann::ordered_json::array();
      for (const auto& op : table) {
        nlohmann::ordered_json o;
        o["op"] = op.op;
        o["chosen"] = op.chosen;
        auto vs = nlohmann::ordered_json::array();
        for (const auto& v : op.variants) vs.push_back({{"name", v.name}, {"isa", v.isa}, {"available", v.available}});
        o["variants"] = vs;
        ops.push_back(o);
      }
      j["kernels"] = ops;
      fmt::print("{}\n", tz::json_io::dump(j, 2));
      return;
    }
    fmt::print("tensorzip 0.1.0\n");
    fmt::print("cpu        {} ({})\n", c.brand, c.vendor);
    std::string feats;
    for (const auto& f : feature_names(c.features)) feats += f + " ";
    fmt::print("features   {}\n", feats);
    fmt::print("amx        {}\n", c.amx_permission ? "tile data permission granted" : "not available");
    fmt::print("isa        max {}, active {}{}\n", isa_name(c.max_isa), isa_name(c.active_isa),
               c.capped ? " (capped by TENSORZIP_ISA=" + c.cap + ")" : "");
    fmt::print("threads    {} (of {} online)\n", num_threads(), hardware_threads());
    fmt::print("blas       OpenBLAS, core {}\n", openblas_core_name());
    fmt::print("\n{:<20} {}\n", "op", "kernel chosen (other variants; * = available)");
    for (const auto& op : table) {
      std::string others;
      for (const auto& v : op.variants)
        if (v.name != op.chosen) others += v.name + (v.available ? "* " : " ");
      fmt::print("{:<20} {}   ({})\n", op.op, op.chosen, others.empty() ? "" : others.substr(0, others.size() - 1));
    }
  });
}

}  // namespace tz::cli
