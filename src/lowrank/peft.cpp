// PEFT LoRA adapters: adapter_model.safetensors + adapter_config.json (see tensorzip/lowrank_ops.h).
#include <filesystem>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
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

// The tensors must be the adapter the config describes: every module's rank is its r (rank_pattern
// or r) and every module is one "target_modules" names. A target with no tensors is legal in PEFT
// (the module may not exist in this model) but worth a warning.
void check_against_config(const PeftAdapter& ad, const std::string& st_path, const std::string& cfg_path) {
  for (const auto* group : {&ad.modules, &ad.embeddings})
    for (const auto& [module, l] : *group)
      require(l.rank == ad.rank_for(module), st_path + ": module '" + module + "' has rank " + std::to_string(l.rank) + " but " + cfg_path +
                                                 " says r = " + std::to_string(ad.rank_for(module)));
  if (ad.target_modules.empty() || ad.target_regex) return;  // a regex (or "all-linear") is PEFT's to match
  std::string list;
  for (const auto& t : ad.target_modules) list += (list.empty() ? "" : ", ") + t;
  for (const auto* group : {&ad.modules, &ad.embeddings})
    for (const auto& [module, l] : *group) {
      bool named = false;
      for (const auto& t : ad.target_modules) named |= peft_module_is(module, t);
      require(named, st_path + ": module '" + module + "' is not among the target_modules of " + cfg_path + " (" + list + ")");
    }
  for (const auto& t : ad.target_modules) {
    bool used = false;
    for (const auto* group : {&ad.modules, &ad.embeddings})
      for (const auto& [module, l] : *group) used |= peft_module_is(module, t);
    if (!used) log(LogLevel::Warn, cfg_path + ": target module '" + t + "' has no LoRA tensors in " + st_path);
  }
}

template <class T>
const T* pattern_entry(const std::map<std::string, T>& pattern, const std::string& module) {
  for (const auto& [key, v] : pattern) {  // PEFT: re.match(rf"(.*\.)?({key})$", module)
    try {
      if (std::regex_match(module, std::regex("(.*\\.)?(" + key + ")"))) return &v;
    } catch (const std::regex_error&) {
      throw Error("adapter_config.json: pattern key '" + key + "' is not a regular expression");
    }
  }
  return nullptr;
}

// Fields of adapter_config.json that do not change what a loaded adapter computes (training,
// initialization, bookkeeping, which layers got tensors — the tensors say that).
const std::set<std::string> kInertFields = {
    "peft_type", "task_type", "inference_mode", "base_model_name_or_path", "revision", "auto_mapping", "lora_dropout",
    "init_lora_weights", "loftq_config", "eva_config", "corda_config", "layers_to_transform", "layers_pattern",
    "exclude_modules", "megatron_config", "megatron_core", "runtime_config", "peft_version", "qalora_group_size",
    "ensure_weight_tying", "target_modules", "r", "lora_alpha", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern",
    "modules_to_save", "fan_in_fan_out", "bias", "lora_bias", "use_qalora", "layer_replication", "target_parameters",
    "trainable_token_indices", "alora_invocation_tokens", "arrow_config"};

}  // namespace

bool peft_module_is(const std::string& module, const std::string& key) { return module == key || ends_with(module, "." + key); }

int64_t PeftAdapter::rank_for(const std::string& module) const {
  const int64_t* p = pattern_entry(rank_pattern, module);
  return p ? *p : r;
}
double PeftAdapter::alpha_for(const std::string& module) const {
  const double* p = pattern_entry(alpha_pattern, module);
  return p ? *p : lora_alpha;
}

PeftAdapter parse_peft_config(const std::string& text, const std::string& label) {
  const nlohmann::json cfg = json_io::parse(text, label);
  PeftAdapter ad;
  try {
    require(cfg.is_object(), label + ": must be a JSON object");
    for (const auto& [k, v] : cfg.items())
      require(kInertFields.count(k) > 0, label + ": field '" + k + "' is not one tensorzip knows; it may change what the adapter computes");
    const auto off = [&](const char* key) {  // present and set: a feature this reader does not run
      const auto v = cfg.value(key, nlohmann::json());
      return v.is_null() || v == false || (v.is_array() && v.empty()) || (v.is_object() && v.empty());
    };
    for (const char* key : {"lora_bias", "use_qalora", "layer_replication", "target_parameters", "trainable_token_indices",
                            "alora_invocation_tokens", "arrow_config", "megatron_config"})
      if (!off(key)) throw Error(label + ": '" + key + "' = " + cfg.at(key).dump() + " is not supported");
    if (cfg.contains("peft_type"))
      if (cfg.at("peft_type") != "LORA") throw Error(label + ": peft_type " + cfg.at("peft_type").dump() + " is not LORA");
    const std::string bias = cfg.value("bias", std::string("none"));
    require(bias == "none" || bias == "all" || bias == "lora_only", label + ": bias '" + bias + "' is not none, all or lora_only");
    ad.r = json_io::get_int(cfg, "r", label, 1, int64_t(1) << 24);
    // |alpha / r| beyond 1e6 is no adapter anyone trained; it would only overflow the merged weights.
    ad.lora_alpha = json_io::get_number(cfg, "lora_alpha", label, -1e6, 1e6);
    for (const char* key : {"use_rslora", "use_dora", "fan_in_fan_out"}) {
      const auto v = cfg.value(key, nlohmann::json(false));
      require(v.is_boolean(), label + ": '" + key + "' must be true or false");
    }
    ad.use_rslora = cfg.value("use_rslora", false);
    ad.use_dora = cfg.value("use_dora", false);
    if (cfg.value("fan_in_fan_out", false))  // PEFT, for torch.nn.Linear targets: "Setting fan_in_fan_out to False"
      log(LogLevel::Warn, label + ": fan_in_fan_out is true but the targets are Linear layers; set to false (as PEFT does)");
    for (const char* key : {"rank_pattern", "alpha_pattern"}) {
      const auto p = cfg.value(key, nlohmann::json());
      require(p.is_null() || p.is_object(), label + ": \"" + key + "\" must be an object");
      if (!p.is_object()) continue;
      for (const auto& [k, v] : p.items()) {
        const std::string where = label + ": " + key + " '" + k.substr(0, 64) + "'";
        // The key is a regular expression (std::regex recurses per character): bound its length.
        require(k.size() <= 256, where + "…: a pattern key longer than 256 characters");
        if (std::string(key) == "rank_pattern") {
          require(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= (int64_t(1) << 24), where + " must be a rank >= 1");
          ad.rank_pattern[k] = v.get<int64_t>();
        } else {
          require(v.is_number() && std::isfinite(v.get<double>()) && std::abs(v.get<double>()) <= 1e6, where + " must be a number");
          ad.alpha_pattern[k] = v.get<double>();
        }
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
    if (const auto m = cfg.value("modules_to_save", nlohmann::json()); !m.is_null()) {
      require(m.is_array(), label + ": \"modules_to_save\" must be a list of module names");
      for (const auto& n : m) ad.modules_to_save.push_back(n.get<std::string>());
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
  const auto module_of = [](std::string name, const std::string& suffix) {
    name.resize(name.size() - suffix.size());
    return name.rfind(kPrefix, 0) == 0 ? name.substr(kPrefix.size()) : name;
  };
  std::map<std::string, std::vector<float>> magnitudes;
  for (const auto& e : f.tensors()) {
    const std::string& n = e.name;
    const auto matrix = [&](const std::string& other_suffix, const std::string& this_suffix, bool this_is_a) {
      const std::string other = n.substr(0, n.size() - this_suffix.size()) + other_suffix;
      require(f.find(other) != nullptr, st_path + ": " + n + " has no matching " + other);
      if (!this_is_a) return;  // the pair is read once, from its A
      const auto* be = f.find(other);
      require(e.shape.size() == 2 && be->shape.size() == 2 && e.shape[0] == be->shape[1],
              st_path + ": " + n + ": A must be [r, in] and B [out, r] with the same r");
      LoraAdapter l;
      l.rank = e.shape[0];
      l.a = as_f32(f, n, st_path);
      l.b = as_f32(f, other, st_path);
      const std::string module = module_of(n, this_suffix);
      l.alpha = float(ad.alpha_for(module));
      l.rslora = ad.use_rslora;
      (this_suffix == ".lora_A.weight" ? ad.modules : ad.embeddings)[module] = std::move(l);
    };
    if (ends_with(n, ".lora_A.weight")) matrix(".lora_B.weight", ".lora_A.weight", true);
    else if (ends_with(n, ".lora_B.weight")) matrix(".lora_A.weight", ".lora_B.weight", false);
    else if (ends_with(n, ".lora_embedding_A")) matrix(".lora_embedding_B", ".lora_embedding_A", true);
    else if (ends_with(n, ".lora_embedding_B")) matrix(".lora_embedding_A", ".lora_embedding_B", false);
    else if (ends_with(n, ".lora_magnitude_vector") || ends_with(n, ".lora_magnitude_vector.weight")) {
      require(ad.use_dora, st_path + ": " + n + " is a DoRA magnitude but " + cfg_path + " has no use_dora");
      require(e.shape.size() == 1, st_path + ": " + n + " must be a vector [out]");
      magnitudes[module_of(n, ends_with(n, ".weight") ? ".lora_magnitude_vector.weight" : ".lora_magnitude_vector")] = as_f32(f, n, st_path);
    } else if (ends_with(n, ".weight")) {  // a module saved whole: modules_to_save, or an embedding layer saved with the adapter
      const std::string module = module_of(n, ".weight");
      bool listed = peft_module_is(module, "embed_tokens") || peft_module_is(module, "lm_head");
      for (const auto& m : ad.modules_to_save) listed |= peft_module_is(module, m);
      require(listed, st_path + ": tensor '" + n + "' is neither a LoRA tensor nor a module of modules_to_save");
      const std::vector<float> v = as_f32(f, n, st_path);
      Tensor t = Tensor::empty(DType::F32, e.shape);
      std::copy(v.begin(), v.end(), t.data<float>());
      ad.saved[module] = t;
    } else {
      throw Error(st_path + ": tensor '" + n + "' is not supported (" +
                  (ends_with(n, ".bias") ? "trained biases: adapter_config bias other than none" : "not a LoRA, DoRA or saved-module tensor") + ")");
    }
  }
  for (auto& [module, m] : magnitudes) {
    const auto it = ad.modules.find(module);
    require(it != ad.modules.end(), st_path + ": DoRA magnitude of '" + module + "' without its lora_A / lora_B");
    require(m.size() * size_t(it->second.rank) == it->second.b.size(),
            st_path + ": DoRA magnitude of '" + module + "' has " + std::to_string(m.size()) + " values, the layer " +
                std::to_string(it->second.b.size() / size_t(it->second.rank)) + " outputs");
    it->second.magnitude = std::move(m);
  }
  if (ad.use_dora)
    for (const auto& [module, l] : ad.modules)
      require(!l.magnitude.empty(), st_path + ": use_dora is set but '" + module + "' has no lora_magnitude_vector");
  require(!ad.modules.empty() || !ad.embeddings.empty() || !ad.saved.empty(), st_path + ": no LoRA tensors");
  check_against_config(ad, st_path, cfg_path);
  return ad;
}

void write_peft_adapter(const std::string& dir, const PeftAdapter& ad) {
  require(!ad.modules.empty() || !ad.embeddings.empty() || !ad.saved.empty(), "peft: nothing to write");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // as PEFT's save_pretrained does
  require(!ec, dir + ": cannot create the adapter directory (" + ec.message() + ")");
  io::SafetensorsWriter w;
  std::vector<Tensor> keep;
  const auto add = [&](const std::string& name, const Shape& shape, const std::vector<float>& v) {
    keep.push_back(Tensor::view(DType::F32, shape, const_cast<float*>(v.data())));
    w.add(kPrefix + name, keep.back());
  };
  for (const auto* group : {&ad.modules, &ad.embeddings}) {
    const bool emb = group == &ad.embeddings;
    for (const auto& [module, l] : *group) {
      require(l.rank >= 1 && l.a.size() % size_t(l.rank) == 0 && l.b.size() % size_t(l.rank) == 0,
              "peft: module " + module + " has inconsistent factor sizes");
      const int64_t in = int64_t(l.a.size()) / l.rank, out = int64_t(l.b.size()) / l.rank;
      add(module + (emb ? ".lora_embedding_A" : ".lora_A.weight"), {l.rank, in}, l.a);
      add(module + (emb ? ".lora_embedding_B" : ".lora_B.weight"), {out, l.rank}, l.b);
      if (!l.magnitude.empty()) add(module + ".lora_magnitude_vector", {int64_t(l.magnitude.size())}, l.magnitude);
    }
  }
  for (const auto& [module, t] : ad.saved) {
    keep.push_back(t.to(DType::F32));
    w.add(kPrefix + module + ".weight", keep.back());
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
  cfg["use_rslora"] = ad.use_rslora;
  cfg["use_dora"] = ad.use_dora;
  cfg["rank_pattern"] = ad.rank_pattern;
  cfg["alpha_pattern"] = ad.alpha_pattern;
  cfg["modules_to_save"] = ad.modules_to_save.empty() ? nlohmann::json() : nlohmann::json(ad.modules_to_save);
  const std::string text = json_io::dump(cfg, 2) + "\n";
  io::AtomicFile cf(dir + "/adapter_config.json");
  cf.write(text.data(), text.size());
  w.write(dir + "/adapter_model.safetensors");
  cf.commit();
}

}  // namespace tz
