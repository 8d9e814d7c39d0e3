// `tensorzip merge -m MODEL --lora DIR[:SCALE]... -o OUT`: PEFT adapters merged into a model's
// weights (merge_lora: every option the runner honours), written as a tensorzip file or a GGUF.
#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/gguf_types.h"
#include "tools/cli/model_session.h"

namespace tz::cli {
namespace {

struct MergeOpts {
  std::string model, tokenizer, out, gguf_type;
  std::vector<std::string> lora;
  bool json = false;
};

void run_merge(const MergeOpts& o) {
  const bool gguf_out = std::filesystem::path(o.out).extension() == ".gguf";
  require(gguf_out || o.gguf_type.empty(), "merge: --gguf-type applies to a .gguf output; " + o.out + " is written as a tensorzip file");
  const auto types = gguf_types(o.gguf_type.empty() ? "f16" : o.gguf_type);  // an unknown type fails before the work
  std::vector<std::string> inputs = {o.tokenizer};
  for (const auto& l : o.lora) inputs.push_back(lora_arg(l).first);
  io::require_output_path(o.out);
  io::require_output_not_input(o.out, model_inputs(o.model, inputs), "merge");
  // Every adapter is read (and its config checked) before any weight changes.
  std::vector<std::pair<PeftAdapter, float>> adapters;
  for (const auto& l : o.lora) {
    const auto [dir, scale] = lora_arg(l);
    adapters.emplace_back(read_peft_adapter(dir), scale);
  }
  LlamaSource src = load_llama(o.model);
  const Tokenizer tok = o.tokenizer.empty() ? default_tokenizer(src, o.model) : tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
  size_t modules = 0;
  for (const auto& [ad, scale] : adapters) {
    merge_lora(src, ad, scale);
    modules += ad.modules.size() + ad.embeddings.size() + ad.saved.size();
  }
  if (gguf_out) {
    check_gguf_llama_export(src, &tok, types.first);
    print_gguf_report(write_gguf_llama(src, tok, o.out, types.first, types.second), o.out);
  } else write_tensorzip(src, &tok, o.out, {{"tensorzip.source", o.model}, {"tensorzip.merged_adapters", [&] {
                                            std::string s;
                                            for (const auto& l : o.lora) s += (s.empty() ? "" : ",") + l;
                                            return s;
                                          }()}});
  const auto bytes = std::filesystem::file_size(o.out);
  if (o.json) {
    nlohmann::json j = {{"model", o.model}, {"adapters", o.lora}, {"modules_merged", modules}, {"output", o.out}, {"bytes", bytes}};
    fmt::print("{}\n", json_io::dump(j));
  } else {
    fmt::print("merged {} adapter(s), {} modules, into {} ({:.1f} MiB)\n", o.lora.size(), modules, o.out, double(bytes) / (1 << 20));
  }
}

}  // namespace

void add_merge(CLI::App& app) {
  auto o = std::make_shared<MergeOpts>();
  auto* c = app.add_subcommand("merge", "Merge PEFT LoRA / DoRA adapters into a model's weights and write it (tensorzip file or GGUF)");
  c->add_option("-m,--model", o->model, "Model: llama2.c .bin, GGUF, Hugging Face directory or tensorzip file")->required();
  c->add_option("--lora", o->lora, "PEFT adapter directory, DIR:SCALE to scale it; repeat for several (merged in order)")->required();
  c->add_option("-o,--output", o->out, "Output: a tensorzip file, or .gguf (llama architecture)")->required();
  c->add_option("--gguf-type", o->gguf_type, std::string("With -o X.gguf (default f16): ") + kGgufTypeNames);
  c->add_option("-z,--tokenizer", o->tokenizer, "Tokenizer written into the output (default: the model's)");
  c->add_flag("--json", o->json, "One JSON object on stdout");
  add_threads_option(c);
  c->callback([o] { run_merge(*o); });
}

}  // namespace tz::cli
