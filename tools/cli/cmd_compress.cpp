// `tensorzip compress`: a checkpoint's linear layers through RTN / AWQ / GPTQ / ternary (+ outliers,
// low-rank compensation, mixed precision) into a tensorzip file that `run` and `eval` load, or a
// GGUF for llama.cpp; per-layer report as a table or JSON.
#include <fmt/core.h>
#include <sys/resource.h>

#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/json.h"
#include "tensorzip/compress.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/gguf_types.h"
#include "tools/cli/commands.h"
#include "tools/cli/model_session.h"
#include "tools/cli/progress.h"

namespace tz::cli {
namespace {

struct Opts {
  std::string in, model, out, method = "rtn", calib, tokenizer, lowrank_method = "eora", scale_dtype = "f16", synthetic, gguf_type;
  int bits = 4, group = 128, outliers = 0, lowrank = 0, calib_docs = 128, calib_len = 256, calib_skip = 0;
  double target_bpw = 0, damp = 0.01;
  TuneOptions tune;  // the library's defaults
  bool asym = false, clip = false, act_order = false, json = false, no_fold = false, true_sequential = false, awq_scales = false;
  std::vector<int> candidate_bits = {2, 3, 4, 8};
  std::vector<std::string> include, exclude;
};

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}


void run(const Opts& o) {
  require(!o.out.empty(), "compress: -o OUT is required");
  require(!o.in.empty() || !o.synthetic.empty(), "compress: give an input model or --synthetic");
  const bool gguf_out = std::filesystem::path(o.out).extension() == ".gguf";
  require(gguf_out || o.gguf_type.empty(), "compress: --gguf-type applies to a .gguf output; " + o.out + " is written as a tensorzip file");
  if (gguf_out && !o.gguf_type.empty()) gguf_types(o.gguf_type);  // an unknown type fails now, not after the work
  io::require_output_path(o.out);
  io::require_output_not_input(o.out, model_inputs(o.in, {o.tokenizer, o.calib}), "compress");
  CompressOptions co;
  co.quant.method = parse_quant_method(o.method);
  co.quant.fmt.bits = o.bits;
  co.quant.fmt.group = o.group;
  co.quant.fmt.symmetric = !o.asym;
  require(o.scale_dtype == "f16" || o.scale_dtype == "f32", "compress: --scale-dtype is f16 or f32");
  co.quant.fmt.scale_dtype = o.scale_dtype == "f16" ? DType::F16 : DType::F32;
  require(o.group >= 0 && o.group % 32 == 0, "compress: --group must be a multiple of 32 (or 0 for whole rows)");
  co.quant.clip_search = o.clip;
  co.quant.act_order = o.act_order;
  co.quant.gptq_awq = o.awq_scales;
  co.quant.gptq_damp = o.damp;
  co.quant.outliers = o.outliers;
  co.quant.lowrank = o.lowrank;
  co.quant.lowrank_method = parse_lowrank_method(o.lowrank_method);
  co.target_bpw = o.target_bpw;
  co.fold_awq = !o.no_fold;
  co.true_sequential = o.true_sequential;
  co.tune = o.tune;
  co.candidate_bits = o.candidate_bits;
  std::sort(co.candidate_bits.begin(), co.candidate_bits.end());
  if (!o.include.empty()) co.include = o.include;
  co.exclude = o.exclude;

  std::unique_ptr<Progress> bar;
  bool tuning = false;
  const auto progress = [&](const std::string& what, int done, int total) {
    if (what == "tuning" && !tuning) {  // a second bar: one step per optimizer step
      if (bar) bar->done();
      bar = std::make_unique<Progress>(total, !o.json);
      tuning = true;
    }
    if (!bar) bar = std::make_unique<Progress>(total + 1, !o.json);
    if (what == "done" && tuning) return;
    bar->step(tuning ? fmt::format("tuning, step {}", done) : what);
  };
  CompressResult res;
  std::optional<Tokenizer> tok;
  std::string calib_desc = "none";
  if (!o.synthetic.empty() || is_llama_model(o.in)) {
    LlamaSource src;
    if (!o.synthetic.empty()) {
      int layers = 0;
      require(std::sscanf(o.synthetic.c_str(), "7b:%d", &layers) == 1 && layers > 0, "compress: --synthetic takes 7b:LAYERS");
      src = synthetic_llama(llama2_7b_config(layers));
      if (!o.tokenizer.empty())  // a generated model has none; one given is written into the output
        tok = tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
    } else {
      src = load_llama(o.in);
      if (!o.tokenizer.empty())
        tok = tokenizer_from_path(o.tokenizer, src.cfg.vocab_size);
      else
        try {
          tok = default_tokenizer(src, o.in);
        } catch (const Error&) {
          // no tokenizer: fine for RTN and captured activations; text calibration will say so
        }
    }
    std::vector<std::vector<int>> calib;
    if (!o.calib.empty()) {
      if (is_tensorzip_file(o.calib) || std::filesystem::path(o.calib).extension() == ".safetensors") {
        throw Error("compress: captured activations (" + o.calib + ") calibrate non-LLaMA checkpoints; for a LLaMA model give calibration text");
      }
      require(tok.has_value(), "compress: text calibration needs a tokenizer (--tokenizer)");
      calib = split_documents(io::read_text_file(o.calib), *tok, "\n\n", o.calib_skip + o.calib_docs, std::min(o.calib_len, src.cfg.seq_len));
      calib.erase(calib.begin(), calib.begin() + std::min<ptrdiff_t>(o.calib_skip, ptrdiff_t(calib.size())));
      require(!calib.empty(), o.calib + ": no calibration text (after --calib-skip)");
      size_t n = 0;
      for (const auto& d : calib) n += d.size();
      calib_desc = fmt::format("{}: {} sequences, {} tokens", o.calib, calib.size(), n);
    } else if (!o.synthetic.empty()) {
      // A generated model has no text: random token sequences exercise the same path.
      std::mt19937 rng(11);
      for (int s = 0; s < std::max(1, o.calib_docs / 16); ++s) {
        std::vector<int> ids(size_t(std::min(o.calib_len, src.cfg.seq_len)));
        for (int& t : ids) t = int(rng() % uint32_t(src.cfg.vocab_size));
        calib.push_back(std::move(ids));
      }
      calib_desc = fmt::format("{} random sequences of {} tokens", calib.size(), calib[0].size());
    }
    // Everything the GGUF writer would refuse (architecture, tokenizer, types) fails now, not after the work.
    if (gguf_out) check_gguf_llama_export(src, tok ? &*tok : nullptr, gguf_types(o.gguf_type.empty() ? (o.bits <= 4 ? "q4_0" : "q8_0") : o.gguf_type).first);
    res = compress_llama(src, calib, co, progress);
  } else {
    require(!gguf_out, "compress: " + o.in + " is a tensor collection, not a LLaMA-family model; GGUF export needs a model");
    LlamaSource src;
    src.label = o.in;
    const auto f = io::SafetensorsFile::open(o.in);
    for (const auto& e : f.tensors()) {
      Tensor t = f.tensor(e.name);
      if (t.dtype() == DType::F16 || t.dtype() == DType::BF16) t = t.to(DType::F32);
      src.tensors[e.name] = t;
    }
    std::unique_ptr<io::SafetensorsFile> acts;
    if (!o.calib.empty()) {
      acts = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(o.calib));
      calib_desc = o.calib + " (captured activations)";
    }
    if (o.include.empty()) co.include = {"*"};
    res = compress_tensors(src, acts.get(), co, progress);
  }
  if (bar) bar->done();
  if (gguf_out) {
    require(res.model.cfg.dim > 0 && tok.has_value(), "compress: GGUF export needs a LLaMA model with a tokenizer");
    // Codes on the type's grid (asymmetric 4/5/8-bit, f16 scales, groups of whole blocks) are kept; the rest re-quantized.
    const auto types = gguf_types(o.gguf_type.empty() ? (o.bits <= 4 ? "q4_0" : "q8_0") : o.gguf_type);
    const GgufWriteReport rep = write_gguf_llama(res.model, *tok, o.out, types.first, types.second);
    if (!o.json) print_gguf_report(rep, o.out);
  } else {
    std::map<std::string, std::string> meta = {{"tensorzip.source", o.in.empty() ? o.synthetic : o.in},
                                               {"tensorzip.method", o.method}, {"tensorzip.calibration", calib_desc}};
    write_tensorzip(res.model, tok ? &*tok : nullptr, o.out, meta);
  }
  if (res.tune.reverted)
    fmt::print(stderr, "tensorzip: warning: tuning {} (KL {:.5f} -> {:.5f} nats/token); the untuned compressed model is written. Lower --tune-lr (now {:g})\n",
               res.tune.diverged_at > 0 ? fmt::format("diverged at step {}", res.tune.diverged_at) : std::string("did not lower the KL"),
               res.tune.kl_before, res.tune.kl_after, o.tune.lr);
  double bits = 0, params = 0;
  for (const auto& l : res.layers) {
    bits += l.bits_per_weight * double(l.rows * l.cols);
    params += double(l.rows * l.cols);
  }
  const auto out_bytes = std::filesystem::file_size(o.out);
  if (o.json) {
    nlohmann::json j = {{"input", o.in.empty() ? o.synthetic : o.in}, {"output", o.out}, {"method", o.method},
                        {"calibration", calib_desc}, {"bits_per_weight", params > 0 ? bits / params : 0},
                        {"output_bytes", out_bytes}, {"seconds", res.seconds}, {"peak_rss_mib", peak_rss_mib()},
                        {"layers", nlohmann::json::array()}};
    if (res.tune.steps > 0)
      j["tune"] = {{"steps", res.tune.steps}, {"params", res.tune.params}, {"kl_before", res.tune.kl_before},
                   {"kl_after", std::isfinite(res.tune.kl_after) ? nlohmann::json(res.tune.kl_after) : nlohmann::json()},
                   {"codes_changed", res.tune.codes_changed}, {"seconds", res.tune.seconds},
                   {"reverted", res.tune.reverted}, {"diverged_at_step", res.tune.diverged_at}};
    for (const auto& l : res.layers)
      j["layers"].push_back({{"name", l.name}, {"format", l.format}, {"method", l.method}, {"rows", l.rows}, {"cols", l.cols},
                             {"bits_per_weight", l.bits_per_weight}, {"weight_rel_err", l.weight_rel_err},
                             {"output_rel_err", l.output_rel_err}, {"seconds", l.seconds}});
    fmt::print("{}\n", json_io::dump(j));
  } else {
    fmt::print("{:<32} {:<16} {:<8} {:>12} {:>8} {:>12} {:>12} {:>9}\n", "layer", "format", "method", "shape", "bits/w",
               "|W-Ŵ|/|W|", "out err", "ms");
    for (const auto& l : res.layers)
      fmt::print("{:<32} {:<16} {:<8} {:>12} {:>8.3f} {:>12.4e} {:>12.4e} {:>9.1f}\n", l.name, l.format, l.method,
                 fmt::format("{}x{}", l.rows, l.cols), l.bits_per_weight, l.weight_rel_err, l.output_rel_err, l.seconds * 1e3);
    if (res.tune.steps > 0 && !res.tune.reverted)
      fmt::print("\ntuned {} parameters{} in {} steps ({:.1f} s): KL from the original model {:.5f} -> {:.5f} nats/token (calibration data)\n",
                 res.tune.params, o.tune.codes ? fmt::format(" and the codes ({} moved)", res.tune.codes_changed) : "", res.tune.steps,
                 res.tune.seconds, res.tune.kl_before, res.tune.kl_after);
    fmt::print("\n{} -> {} ({:.2f} MiB): {} layers at {:.3f} bits/weight, calibration {}, {:.1f} s, peak RSS {:.0f} MiB\n",
               o.in.empty() ? o.synthetic : o.in, o.out, double(out_bytes) / (1 << 20), res.layers.size(),
               params > 0 ? bits / params : 0.0, calib_desc, res.seconds, peak_rss_mib());
  }
}

}  // namespace

void add_compress(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("compress", "Quantize a model's linear layers (RTN, AWQ, GPTQ, ternary; outliers, low-rank compensation, mixed precision)");
  c->add_option("input", o->in, "Model: llama2.c .bin, GGUF, Hugging Face directory / safetensors (any architecture), tensorzip file");
  c->add_option("-m,--model", o->model, "The model, as every other subcommand takes it (or give it as the positional input)");
  add_threads_option(c);
  c->add_option("-o,--output", o->out, "Output: a tensorzip file (safetensors container), or .gguf for llama.cpp")->required();
  c->add_option("--method", o->method, "rtn, awq, gptq or ternary")->capture_default_str();
  c->add_option("--bits", o->bits, "Bits per weight 1..8")->capture_default_str()->check(CLI::Range(1, 8));
  c->add_option("--group", o->group, "Values per scale group: 32, 64, 128, 256, or 0 for a whole row")->capture_default_str();
  c->add_flag("--asym", o->asym, "Asymmetric (a zero point per group)");
  c->add_option("--scale-dtype", o->scale_dtype, "f16 or f32 scales")->capture_default_str();
  c->add_flag("--clip", o->clip, "Search the clip ratio per group (RTN, AWQ, GPTQ)");
  c->add_flag("--awq-scales", o->awq_scales, "GPTQ: search AWQ's per-channel scales first, then run GPTQ on the scaled weights");
  c->add_flag("--act-order", o->act_order, "GPTQ: quantize columns by decreasing Hessian diagonal (static groups)");
  c->add_flag("--no-fold", o->no_fold, "AWQ: store each layer's input scale instead of folding one scale per input group into the RMSNorm / previous layer");
  c->add_flag("--true-sequential", o->true_sequential,
              "Collect each input group's statistics after the earlier groups of the layer are compressed (q/k/v, o, gate/up, down)");
  c->add_option("--tune-epochs", o->tune.epochs,
                "After compressing: tune the group scales (with --tune-codes also the codes) end to end by distillation from the original model, "
                "this many passes over the calibration text (LLaMA models; 0: off). GPTQ and RTN tune best from --clip")
      ->capture_default_str()->check(non_negative());
  c->add_option("--tune-lr", o->tune.lr, "Adam step on log(scale), cosine-decayed")->capture_default_str()->check(positive());
  c->add_option("--tune-batch", o->tune.batch, "Calibration sequences per tuning step")->capture_default_str()->check(positive());
  c->add_flag("--tune-norms", o->tune.norms, "Tune the RMSNorm weights too");
  c->add_option("--tune-seed", o->tune.seed, "Seed of the order the calibration sequences are visited in")->capture_default_str();
  c->add_flag("--tune-embedding", o->tune.embedding, "Tune the f32 token embedding too (and so a tied classifier)");
  c->add_flag("--tune-codes", o->tune.codes, "Tune the codes too (straight-through rounding of a relaxed code per weight)");
  c->add_option("--tune-codes-lr", o->tune.codes_lr, "Adam step on the relaxed codes, in code units, cosine-decayed")
      ->capture_default_str()->check(positive());
  c->add_option("--damp", o->damp, "GPTQ dampening, fraction of the mean Hessian diagonal")->capture_default_str();
  c->add_option("--outliers", o->outliers, "Input channels with the largest activations kept dense (f16)")->check(non_negative());
  c->add_option("--lowrank", o->lowrank, "Rank of the low-rank error compensation (0: none)")->check(non_negative());
  c->add_option("--lowrank-method", o->lowrank_method, "eora (activation eigenspace), lqlora (alternating) or svd")->capture_default_str();
  c->add_option("--target-bpw", o->target_bpw, "Mixed precision: per-layer bits from measured sensitivity to meet this average")
      ->check(non_negative());
  c->add_option("--candidate-bits", o->candidate_bits, "Widths the mixed-precision search picks from")->delimiter(',')->capture_default_str();
  c->add_option("--calib", o->calib, "Calibration: a text file (LLaMA models) or captured activations (.safetensors, other models)");
  c->add_option("--calib-docs", o->calib_docs, "Calibration documents (blank-line separated) used")->capture_default_str()->check(positive());
  c->add_option("--calib-skip", o->calib_skip, "Skip this many documents first (calibrate on text the evaluation does not use)")
      ->check(non_negative());
  c->add_option("--calib-len", o->calib_len, "Tokens per calibration document (truncated)")->capture_default_str()->check(positive());
  c->add_option("--include", o->include, "Globs of tensors to compress (default: layers.* for LLaMA models, * otherwise)");
  c->add_option("--exclude", o->exclude, "Globs of tensors to leave dense");
  c->add_option("-z,--tokenizer", o->tokenizer, "Tokenizer for text calibration (default: the model's)");
  c->add_option("--synthetic", o->synthetic, "Compress a generated model with LLaMA-2-7B layer shapes: 7b:LAYERS");
  c->add_option("--gguf-type", o->gguf_type, std::string("With -o X.gguf: ") + kGgufTypeNames + " (default q4_0, q8_0 above 4 bits)");
  c->add_flag("--json", o->json, "One JSON object with the per-layer report");
  c->callback([o] {
    require(o->in.empty() || o->model.empty(), "compress: give the model once (-m or the positional input), not both");
    if (!o->model.empty()) o->in = o->model;
    run(*o);
  });
}

}  // namespace tz::cli
