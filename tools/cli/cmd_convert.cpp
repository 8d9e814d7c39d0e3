// `tensorzip convert IN -o OUT.gguf --type T`: a model re-typed for llama.cpp without calibration
// (llama-quantize's job, from any model tensorzip reads): every matrix in T or the mixture T
// names, per-tensor fallbacks as llama-quantize's, the added error and the file's bits/weight.
// `tensorzip convert IN -o OUT.tz`: the model as a tensorzip file, every quantized layer (GGUF
// blocks, AWQ / GPTQ codes) kept exactly as it is.
#include <fmt/core.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/llama.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/gguf_types.h"
#include "tools/cli/model_session.h"

namespace tz::cli {
namespace {

struct ConvertOpts {
  std::string in, model, out, type, tokenizer;
  bool json = false;
};

void run_convert(const ConvertOpts& o) {
  require(o.in.empty() || o.model.empty(), "convert: give the model once (-m or the positional input), not both");
  const std::string in = o.in.empty() ? o.model : o.in;
  require(!in.empty(), "convert: give the input model (-m MODEL)");
  const std::string ext = std::filesystem::path(o.out).extension().string();
  require(ext == ".gguf" || ext == ".tz", "convert: the output must be a .gguf or .tz file (" + o.out + ")");
  require(ext == ".gguf" ? !o.type.empty() : o.type.empty(),
          ext == ".gguf" ? "convert: a .gguf output needs --type (e.g. q4_k_m, q8_0, f16)"
                         : "convert: --type applies to .gguf outputs; a .tz file keeps every layer as the input stores it");
  const auto types = ext == ".gguf" ? gguf_types(o.type) : decltype(gguf_types(o.type)){};
  io::require_output_path(o.out);
  io::require_output_not_input(o.out, model_inputs(in, {o.tokenizer}), "convert");
  const LlamaSource src = load_llama(in);
  const Tokenizer tok = o.tokenizer.empty() ? default_tokenizer(src, in) : tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
  if (ext == ".tz") {
    write_tensorzip(src, &tok, o.out, {{"tensorzip.source", in}});
    std::map<std::string, int> methods;
    for (const auto& [name, c] : src.quantized) ++methods[c.method.empty() ? "quantized" : c.method];
    nlohmann::json kept = nlohmann::json::object();
    for (const auto& [m, n] : methods) kept[m] = n;
    const auto bytes = std::filesystem::file_size(o.out);
    if (o.json) {
      fmt::print("{}\n", json_io::dump(nlohmann::json{{"input", in}, {"output", o.out}, {"bytes", bytes}, {"quantized_layers", kept},
                                                      {"dense_tensors", src.tensors.size()}}));
      return;
    }
    for (const auto& [m, n] : methods) fmt::print("{} layer(s) kept as {}\n", n, m);
    fmt::print("{}: {} bytes, {} dense tensor(s)\n", o.out, bytes, src.tensors.size());
    return;
  }
  check_gguf_llama_export(src, &tok, types.first);  // before any tensor is quantized
  const GgufWriteReport rep = write_gguf_llama(src, tok, o.out, types.first, types.second);
  if (o.json) {
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : rep.tensors)
      tensors.push_back({{"name", t.name}, {"requested", t.requested}, {"written", t.written}, {"values", t.values}, {"bytes", t.bytes},
                         {"rel_error", t.rel_error}, {"codes_kept", t.codes_kept}});
    fmt::print("{}\n", json_io::dump(nlohmann::json{{"input", in}, {"output", o.out}, {"type", o.type}, {"bits_per_weight", rep.bits_per_weight},
                                                    {"fallbacks", rep.fallbacks}, {"tensors", tensors}}));
    return;
  }
  fmt::print("{:<28} {:<8} {:<8} {:>12} {:>10}  {}\n", "tensor", "asked", "written", "bytes", "rel err", "codes");
  int kept = 0;
  for (const auto& t : rep.tensors) {
    kept += t.codes_kept;
    if (t.written != "f32" || t.requested != "f32")
      fmt::print("{:<28} {:<8} {:<8} {:>12} {:>10.3g}  {}\n", t.name, t.requested, t.written, t.bytes, t.rel_error,
                 t.codes_kept ? "kept" : "re-quantized");
  }
  fmt::print("{}: {:.2f} bits/weight, {} fallback(s), {} matrices keep their codes\n", o.out, rep.bits_per_weight, rep.fallbacks, kept);
}

}  // namespace

void add_convert(CLI::App& app) {
  auto o = std::make_shared<ConvertOpts>();
  auto* c = app.add_subcommand("convert", "Re-type a model as a llama.cpp GGUF without calibration (as llama-quantize; any model tensorzip reads), "
                                          "or write it as a tensorzip .tz file with every quantized layer kept");
  c->add_option("input", o->in, "Model: llama2.c .bin, GGUF, Hugging Face directory or tensorzip file");
  c->add_option("-m,--model", o->model, "The model (or the positional input)");
  c->add_option("-o,--output", o->out, "Output .gguf (re-typed) or .tz (as stored)")->required();
  c->add_option("--type", o->type, std::string("GGUF type or mixture (a .gguf output): ") + kGgufTypeNames);
  c->add_option("-z,--tokenizer", o->tokenizer, "Tokenizer written into the output (default: the model's)");
  c->add_flag("--json", o->json, "One JSON object on stdout (every tensor's type, fallback and added error)");
  add_threads_option(c);
  c->callback([o] { run_convert(*o); });
}

}  // namespace tz::cli
