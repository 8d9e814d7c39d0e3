// `tensorzip inspect FILE [--json]`: tensors (name, dtype, shape, bytes) and metadata of a
// safetensors, GGUF or llama2.c file. The format is recognised from the file's first bytes.
#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/llama2c.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tools/cli/commands.h"
#include "tools/cli/file_format.h"

namespace tz::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct Listing {
  std::string format;
  ojson meta = ojson::array();     // {key, type, value}
  ojson tensors = ojson::array();  // {name, dtype, shape, bytes}
};


ojson scalar_json(const io::GgufScalar& s) {
  return std::visit([](const auto& v) { return ojson(v); }, s);
}

Listing list_gguf(const std::string& path, bool full) {
  Listing L;
  const auto f = io::GgufFile::open(path);
  L.format = "gguf v" + std::to_string(f.version());
  for (const auto& kv : f.metadata()) {
    ojson value;
    if (kv.value.type == io::GgufType::ARRAY) {
      value = ojson::array();
      for (size_t i = 0; i < kv.value.items.size() && (full || i < 8); ++i) value.push_back(scalar_json(kv.value.items[i]));
    } else {
      value = scalar_json(kv.value.items.at(0));
    }
    L.meta.push_back({{"key", kv.key}, {"type", kv.value.type_string()}, {"value", value},
                      {"text", full ? kv.value.to_string(kv.value.items.size()) : kv.value.to_string()}});
  }
  for (const auto& t : f.tensors())
    L.tensors.push_back({{"name", t.name}, {"dtype", io::ggml_type_info(t.ggml_type)->name}, {"shape", t.shape}, {"bytes", t.nbytes}});
  return L;
}

Listing list_safetensors(const std::string& path) {
  Listing L;
  const auto f = io::SafetensorsFile::open(path);
  L.format = "safetensors";
  for (const auto& [k, v] : f.metadata()) L.meta.push_back({{"key", k}, {"type", "string"}, {"value", v}, {"text", v}});
  for (const auto& t : f.tensors())
    L.tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.end - t.begin}});
  return L;
}

// A model directory (Hugging Face or PEFT): the keys of config.json / adapter_config.json and
// the tensors of every safetensors file in it (shards in name order).
Listing list_directory(const std::string& dir, bool full) {
  namespace fs = std::filesystem;
  Listing L;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  int shards = 0;
  for (const auto& f : files) {
    const std::string name = f.filename().string();
    if (name != "config.json" && name != "adapter_config.json") continue;
    const json_io::Json j = json_io::parse(io::read_text_file(f.string()), f.string());
    require(j.is_object(), f.string() + ": not a JSON object");
    for (const auto& [k, v] : j.items()) {
      std::string text = v.is_string() ? v.get<std::string>() : v.dump();
      if (!full && text.size() > 96) text = text.substr(0, 93) + "...";
      L.meta.push_back({{"key", (name == "config.json" ? "" : name + ":") + k}, {"type", v.type_name()}, {"value", ojson::parse(v.dump())}, {"text", text}});
    }
  }
  for (const auto& f : files) {
    if (f.extension() != ".safetensors") continue;
    ++shards;
    const auto st = io::SafetensorsFile::open(f.string());
    for (const auto& t : st.tensors())
      L.tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.end - t.begin},
                           {"file", f.filename().string()}});
  }
  require(shards > 0 || !L.meta.empty(), dir + ": a directory without config.json, adapter_config.json or safetensors files");
  L.format = "directory, " + std::to_string(shards) + " safetensors file" + (shards == 1 ? "" : "s");
  return L;
}

Listing list_llama2c(const std::string& path) {
  Listing L;
  const auto f = io::Llama2cCheckpoint::open(path);
  const auto& c = f.config();
  L.format = "llama2.c v" + std::to_string(c.version);
  for (auto [k, v] : {std::pair{"dim", c.dim}, {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
                      {"n_kv_heads", c.n_kv_heads}, {"vocab_size", c.vocab_size}, {"seq_len", c.seq_len}})
    L.meta.push_back({{"key", k}, {"type", "i32"}, {"value", v}, {"text", std::to_string(v)}});
  L.meta.push_back({{"key", "shared_classifier"}, {"type", "bool"}, {"value", c.shared_classifier},
                    {"text", c.shared_classifier ? "true" : "false"}});
  for (const auto& t : f.tensors())
    L.tensors.push_back({{"name", t.name}, {"dtype", "F32"}, {"shape", t.shape}, {"bytes", shape_numel(t.shape) * 4}});
  return L;
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "List the tensors and metadata of a safetensors, GGUF or llama2.c file, or a model directory");
  static std::string path, format = "auto";
  cmd->add_option("file", path, "Model file, or a model directory (Hugging Face, PEFT adapter)")->required();
  cmd->add_option("--format", format, "auto, safetensors, gguf or llama2c")->check(CLI::IsMember({"auto", "safetensors", "gguf", "llama2c"}));
  static bool json = false, full = false;
  cmd->add_flag("--json", json, "One JSON object instead of text");
  cmd->add_flag("--full", full, "Whole metadata arrays and values, in text and JSON (default: the first 8 items, long values cut)");
  cmd->callback([] {
    std::string fmt_name = format;
    const bool dir = std::filesystem::is_directory(path);
    require(!dir || format == "auto", "inspect: " + path + " is a directory; --format applies to files");
    if (fmt_name == "auto" && !dir) fmt_name = detect_format(*io::MappedFile::open(path));
    Listing L = dir ? list_directory(path, full)
              : fmt_name == "gguf" ? list_gguf(path, full)
              : fmt_name == "safetensors" ? list_safetensors(path) : list_llama2c(path);
    uint64_t total = 0;
    for (const auto& t : L.tensors) total += t["bytes"].get<uint64_t>();
    if (json) {
      ojson j;
      j["file"] = path;
      j["format"] = L.format;
      for (auto& m : L.meta) m.erase("text");
      j["metadata"] = L.meta;
      j["tensors"] = L.tensors;
      j["tensor_bytes"] = total;
      fmt::print("{}\n", tz::json_io::dump(j));
      return;
    }
    fmt::print("{}: {}, {} tensors ({} bytes), {} metadata keys\n", path, L.format, L.tensors.size(), total, L.meta.size());
    if (!L.meta.empty()) {
      fmt::print("\n{:<40} {:<24} {}\n", "key", "type", "value");
      for (const auto& m : L.meta)
        fmt::print("{:<40} {:<24} {}\n", m["key"].get<std::string>(), m["type"].get<std::string>(), m["text"].get<std::string>());
    }
    if (!L.tensors.empty()) {
      fmt::print("\n{:<40} {:<8} {:<22} {:>12}\n", "tensor", "dtype", "shape", "bytes");
      for (const auto& t : L.tensors)
        fmt::print("{:<40} {:<8} {:<22} {:>12}\n", t["name"].get<std::string>(), t["dtype"].get<std::string>(),
                   shape_to_string(t["shape"].get<Shape>()), t["bytes"].get<uint64_t>());
    }
  });
}

}  // namespace tz::cli
