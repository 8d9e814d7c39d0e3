// PEFT LoRA adapters: adapter_model.safetensors + adapter_config.json (see tensorzip/lowrank_ops.h).
#include <filesystem>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

const std::string kPrefix = "base_model.model.";
const std::string kA = ".lora_A.weight", kB = ".lora_B.weight";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<float> as_f32(const io::SafetensorsFile& f, const std::string& name, const std::string& path) {
  const Tensor t = f.tensor(name);
  require(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
          path + ": tensor " + name + " must be f32, f16 or bf16");
  const Tensor c = t.to(DType::F32);
  const float* p = c.data<float>();
  std::vector<float> v(p, p + c.numel());
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) throw Error(path + ": tensor " + name + " has a non-finite value at " + std::to_string(i));
  return v;
}

// The tensors must be the adapter the config describes: every module's rank is "r" (PEFT's
// rank_pattern, which lets ranks differ, is honoured only as "ranks may differ") and every module
// is one "target_modules" names. A target with no tensors is legal in PEFT (the module may not
// exist in this model) but worth a warning.
void check_against_config(const PeftAdapter& ad, const std::string& st_path, const std::string& cfg_path) {
  for (const auto& [module, l] : ad.modules)
    require(ad.ranks_may_differ || l.rank == ad.r, st_path + ": module '" + module + "' has rank " + std::to_string(l.rank) + " but " +
                                                     cfg_path + " says r = " + std::to_string(ad.r));
  if (ad.target_modules.empty() || ad.target_regex) return;  // a regex (or "all-linear") is PEFT's to match
  const auto targets = [&](const std::string& module, const std::string& t) {
    return module == t || ends_with(module, "." + t);
  };
  for (const auto& [module, l] : ad.modules) {
    bool named = false;
    for (const auto& t : ad.target_modules) named |= targets(module, t);
    std::string list;
    for (const auto& t : ad.target_modules) list += (list.empty() ? "" : ", ") + t;
    require(named, st_path + ": module '" + module + "' is not among the target_modules of " + cfg_path + " (" + list + ")");
  }
  for (const auto& t : ad.target_modules) {
    bool used = false;
    for (const auto& [module, l] : ad.modules) used |= targets(module, t);
    if (!used) log(LogLevel::Warn, cfg_path + ": target module '" + t + "' has no lora_A / lora_B tensors in " + st_path);
  }
}

}  // namespace

PeftAdapter parse_peft_config(const std::string& text, const std::string& label) {
  const nlohmann::json cfg = json_io::parse(text, label);
  PeftAdapter ad;
  try {
    require(cfg.is_object(), label + ": must be a JSON object");
    ad.r = json_io::get_int(cfg, "r", label, 1, int64_t(1) << 24);
    // |alpha / r| beyond 1e6 is no adapter anyone trained; it would only overflow the merged weights.
    ad.lora_alpha = json_io::get_number(cfg, "lora_alpha", label, -1e6, 1e6);
    for (const char* key : {"rank_pattern", "alpha_pattern"}) {
      const auto p = cfg.value(key, nlohmann::json());
      require(p.is_null() || p.is_object(), label + ": \"" + key + "\" must be an object");
      if (p.is_object() && !p.empty()) {
        require(std::string(key) == "rank_pattern", label + ": \"alpha_pattern\" (per-module alpha) is not supported");
        ad.ranks_may_differ = true;
      }
    }
    if (cfg.contains("target_modules")) {
      const auto& tm = cfg["target_modules"];
      if (tm.is_string()) {  // PEFT: a regular expression over module names, or "all-linear"
        ad.target_modules.push_back(tm.get<std::string>());
        ad.target_regex = true;
      }
      else if (tm.is_array())
        for (const auto& m : tm) ad.target_modules.push_back(m.get<std::string>());
      else if (!tm.is_null()) throw Error(label + ": \"target_modules\" must be a string or a list of strings");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(label + ": " + e.what());
  }
  return ad;
}

PeftAdapter read_peft_adapter(const std::string& dir) {
  const std::string cfg_path = dir + "/adapter_config.json", st_path = dir + "/adapter_model.safetensors";
  PeftAdapter ad = parse_peft_config(io::read_text_file(cfg_path), cfg_path);
  const auto f = io::SafetensorsFile::open(st_path);
  for (const auto& e : f.tensors()) {
    if (!ends_with(e.name, kA)) continue;
    std::string module = e.name.substr(0, e.name.size() - kA.size());
    const std::string bname = module + kB;
    require(f.find(bname) != nullptr, st_path + ": " + e.name + " has no matching " + bname);
    const auto* be = f.find(bname);
    require(e.shape.size() == 2 && be->shape.size() == 2 && e.shape[0] == be->shape[1],
            st_path + ": " + module + ": lora_A must be [r, in] and lora_B [out, r] with the same r");
    if (module.rfind(kPrefix, 0) == 0) module = module.substr(kPrefix.size());
    LoraAdapter l;
    l.rank = e.shape[0];
    l.alpha = float(ad.lora_alpha);
    l.a = as_f32(f, e.name, st_path);
    l.b = as_f32(f, bname, st_path);
    ad.modules[module] = std::move(l);
  }
  for (const auto& e : f.tensors())
    if (ends_with(e.name, kB)) {
      std::string module = e.name.substr(0, e.name.size() - kB.size());
      require(f.find(module + kA) != nullptr, st_path + ": " + e.name + " has no matching lora_A");
    }
  require(!ad.modules.empty(), st_path + ": no lora_A / lora_B tensors");
  check_against_config(ad, st_path, cfg_path);
  return ad;
}

void write_peft_adapter(const std::string& dir, const PeftAdapter& ad) {
  require(!ad.modules.empty(), "peft: nothing to write");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // as PEFT's save_pretrained does
  require(!ec, dir + ": cannot create the adapter directory (" + ec.message() + ")");
  io::SafetensorsWriter w;
  std::vector<Tensor> keep;
  for (const auto& [module, l] : ad.modules) {
    require(l.rank >= 1 && l.a.size() % size_t(l.rank) == 0 && l.b.size() % size_t(l.rank) == 0,
            "peft: module " + module + " has inconsistent factor sizes");
    const int64_t in = int64_t(l.a.size()) / l.rank, out = int64_t(l.b.size()) / l.rank;
    keep.push_back(Tensor::view(DType::F32, {l.rank, in}, const_cast<float*>(l.a.data())));
    w.add(kPrefix + module + kA, keep.back());
    keep.push_back(Tensor::view(DType::F32, {out, l.rank}, const_cast<float*>(l.b.data())));
    w.add(kPrefix + module + kB, keep.back());
  }
  w.set_metadata("format", "pt");
  nlohmann::json cfg;
  cfg["peft_type"] = "LORA";
  cfg["r"] = ad.r;
  cfg["lora_alpha"] = ad.lora_alpha;
  if (ad.target_regex && ad.target_modules.size() == 1) cfg["target_modules"] = ad.target_modules[0];
  else cfg["target_modules"] = ad.target_modules;
  cfg["bias"] = "none";
  cfg["lora_dropout"] = 0.0;
  const std::string text = json_io::dump(cfg, 2) + "\n";
  io::AtomicFile cf(dir + "/adapter_config.json");
  cf.write(text.data(), text.size());
  w.write(dir + "/adapter_model.safetensors");
  cf.commit();
}

}  // namespace tz
