// tensorzip.Model (load, tokenize, logits, generate, perplexity) and tensorzip.compress: the
// LLaMA-family runner and compressor (llama.h, compress.h) from Python.
#include <pybind11/stl.h>

#include <chrono>
#include <memory>

#include "arrays.h"
#include "bindings.h"
#include "tensorzip/compress.h"
#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/tokenizer.h"

namespace tzpy {
namespace {

struct Model {
  std::string path;
  tz::LlamaSource src;
  tz::Tokenizer tok;
  std::unique_ptr<tz::LlamaModel> model;
};

std::shared_ptr<Model> load(const std::string& path, const std::string& weights, const std::string& tokenizer, const py::object& lora) {
  std::vector<std::pair<std::string, float>> adapters;
  if (!lora.is_none()) {
    if (py::isinstance<py::str>(lora)) adapters.emplace_back(lora.cast<std::string>(), 1.f);
    else
      for (auto item : lora) {
        if (py::isinstance<py::str>(item)) adapters.emplace_back(item.cast<std::string>(), 1.f);
        else adapters.push_back(item.cast<std::pair<std::string, float>>());
      }
  }
  py::gil_scoped_release nogil;
  auto m = std::make_shared<Model>();
  m->path = path;
  m->src = tz::load_llama(path);
  if (tokenizer.empty()) m->tok = tz::default_tokenizer(m->src, path);
  else if (tokenizer.size() > 5 && tokenizer.compare(tokenizer.size() - 5, 5, ".json") == 0) m->tok = tz::Tokenizer::from_hf_json(tokenizer);
  else m->tok = tz::Tokenizer::from_llama2c(tokenizer, m->src.cfg.vocab_size);
  m->model = std::make_unique<tz::LlamaModel>(m->src, tz::FormatSpec(weights));
  for (const auto& [dir, scale] : adapters) m->model->attach_lora(tz::read_peft_adapter(dir), scale, &m->src);
  return m;
}

py::dict config_of(const tz::LlamaConfig& c) {
  py::dict d;
  d["arch"] = c.arch;
  d["dim"] = c.dim;
  d["hidden_dim"] = c.hidden_dim;
  d["n_layers"] = c.n_layers;
  d["n_heads"] = c.n_heads;
  d["n_kv_heads"] = c.n_kv_heads;
  d["vocab_size"] = c.vocab_size;
  d["seq_len"] = c.seq_len;
  d["head_size"] = c.head_size();
  d["rope_theta"] = c.rope_theta;
  d["norm_eps"] = c.norm_eps;
  return d;
}

std::vector<int> checked_tokens(const Model& m, const std::vector<int>& ids) {
  for (int t : ids)
    if (t < 0 || t >= m.model->config().vocab_size)
      value_error("tokens: id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(m.model->config().vocab_size - 1) + ")");
  return ids;
}

py::array_t<float> logits(const Model& m, const std::vector<int>& ids_in) {
  const std::vector<int> ids = checked_tokens(m, ids_in);
  if (ids.empty()) value_error("tokens: empty");
  const int n = int(ids.size()), vocab = m.model->config().vocab_size;
  if (n > m.model->config().seq_len) value_error("tokens: " + std::to_string(n) + " tokens exceed the context (" + std::to_string(m.model->config().seq_len) + ")");
  py::array_t<float> out = new_f32({n, vocab});
  float* p = out.mutable_data();
  py::gil_scoped_release nogil;
  tz::LlamaSession s(*m.model, n);
  s.forward(ids.data(), n, 0, p, true);
  return out;
}

std::string generate(const Model& m, const std::string& prompt, int max_tokens, float temperature, float top_p, int top_k, float min_p,
                     const py::object& seed, const std::vector<std::string>& stop) {
  if (max_tokens < 0) value_error("max_tokens: must be >= 0");
  const uint64_t sd = seed.is_none() ? uint64_t(std::chrono::system_clock::now().time_since_epoch().count()) : seed.cast<uint64_t>();
  py::gil_scoped_release nogil;
  const tz::LlamaConfig& c = m.model->config();
  std::vector<int> ids = m.tok.encode(prompt, true);
  if (ids.empty()) ids.push_back(m.tok.bos_id());
  if (int(ids.size()) >= c.seq_len)
    throw tz::Error("generate: the prompt's " + std::to_string(ids.size()) + " tokens fill the context (" + std::to_string(c.seq_len) + ")");
  tz::LlamaSession s(*m.model, c.seq_len);
  std::vector<float> lg(size_t(c.vocab_size));
  s.forward(ids.data(), int(ids.size()), 0, lg.data());
  tz::Sampler sampler(c.vocab_size, temperature, top_p, sd);
  sampler.set_top_k(top_k);
  sampler.set_min_p(min_p);
  std::string text;
  int pos = int(ids.size()), prev = ids.back();
  for (int i = 0; i < max_tokens && pos < c.seq_len; ++i) {
    const int next = sampler.sample(lg.data());
    if (next == m.tok.eos_id()) break;
    text += m.tok.decode_piece(prev, next);
    size_t cut = std::string::npos;
    for (const auto& st : stop) cut = std::min(cut, text.find(st));
    if (cut != std::string::npos) {
      text.resize(cut);
      break;
    }
    s.forward(&next, 1, pos++, lg.data());
    prev = next;
  }
  return text;
}

py::dict perplexity(Model& m, const std::string& text, int ctx, int stride) {
  const tz::LlamaConfig& c = m.model->config();
  if (ctx <= 0) ctx = c.seq_len;
  if (ctx < 2 || ctx > c.seq_len) value_error("ctx: between 2 and the model's context " + std::to_string(c.seq_len) + ", got " + std::to_string(ctx));
  if (stride <= 0) stride = std::max(1, ctx / 2);
  if (stride > ctx) value_error("stride: at most ctx (" + std::to_string(ctx) + ")");
  tz::PerplexityResult r;
  {
    py::gil_scoped_release nogil;
    std::vector<std::vector<int>> seqs{m.tok.encode(text, true)};
    if (seqs[0].size() < 2) throw tz::Error("perplexity: the text has fewer than 2 tokens");
    tz::LlamaSession s(*m.model, ctx);
    r = tz::evaluate_perplexity(s, seqs, ctx, stride);
  }
  py::dict d;
  d["perplexity"] = r.perplexity();
  d["error"] = r.perplexity_error();
  d["mean_nll"] = r.mean_nll;
  d["tokens"] = r.scored;
  d["seconds"] = r.forward_s;
  return d;
}

py::dict compress(const std::string& model, const std::string& output, const std::string& method, int bits, int group, bool symmetric,
                  const std::string& calib, int calib_docs, int calib_len, bool act_order, bool clip, int outliers, int lowrank,
                  const std::vector<std::string>& include, const std::vector<std::string>& exclude) {
  if (output.size() < 3 || output.compare(output.size() - 3, 3, ".tz") != 0)
    value_error("output: a tensorzip file path ending in .tz (GGUF export: the tensorzip CLI), got '" + output + "'");
  tz::CompressOptions co;
  co.quant.method = tz::parse_quant_method(method);
  co.quant.fmt.bits = bits;
  co.quant.fmt.group = group;
  co.quant.fmt.symmetric = symmetric;
  co.quant.fmt.scale_dtype = tz::DType::F16;
  co.quant.act_order = act_order;
  co.quant.clip_search = clip;
  co.quant.outliers = outliers;
  co.quant.lowrank = lowrank;
  if (!include.empty()) co.include = include;
  co.exclude = exclude;
  tz::CompressResult res;
  {
    py::gil_scoped_release nogil;
    if (!tz::is_llama_model(model)) throw tz::Error(model + ": not a LLaMA-family model (llama2.c, GGUF, Hugging Face directory, .tz)");
    const tz::LlamaSource src = tz::load_llama(model);
    std::optional<tz::Tokenizer> tok;
    try {
      tok = tz::default_tokenizer(src, model);
    } catch (const tz::Error&) {
      if (!calib.empty()) throw;
    }
    std::vector<std::vector<int>> seqs;
    if (!calib.empty()) {
      seqs = tz::split_documents(calib, *tok, "\n\n", calib_docs, std::min(calib_len, src.cfg.seq_len));
      if (seqs.empty()) throw tz::Error("compress: no calibration text");
    }
    res = tz::compress_llama(src, seqs, co);
    tz::write_tensorzip(res.model, tok ? &*tok : nullptr, output,
                        {{"tensorzip.source", model}, {"tensorzip.method", method}, {"tensorzip.calibration", calib.empty() ? "none" : "text"}});
  }
  py::list layers;
  double bitsum = 0, params = 0;
  for (const auto& l : res.layers) {
    py::dict d;
    d["name"] = l.name;
    d["format"] = l.format;
    d["method"] = l.method;
    d["rows"] = l.rows;
    d["cols"] = l.cols;
    d["bits_per_weight"] = l.bits_per_weight;
    d["weight_rel_err"] = l.weight_rel_err;
    d["output_rel_err"] = l.output_rel_err;
    layers.append(d);
    bitsum += l.bits_per_weight * double(l.rows * l.cols);
    params += double(l.rows * l.cols);
  }
  py::dict r;
  r["output"] = output;
  r["layers"] = layers;
  r["bits_per_weight"] = params > 0 ? bitsum / params : 0.0;
  r["seconds"] = res.seconds;
  return r;
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Model, std::shared_ptr<Model>>(m, "Model", R"(A LLaMA-family model (llama, qwen2, qwen3, phi3, gemma2, olmo2) with its tokenizer.

Model.load(path, weights='native', tokenizer=None, lora=None): llama2.c .bin, GGUF, a Hugging Face
directory or a tensorzip .tz file. weights: 'native' (as stored), 'f32', 'bf16', 'q4', 'q2g64', ...
(per-name overrides like the CLI's --weights). lora: a PEFT adapter directory, or a list of
directories / (directory, scale) pairs, applied unmerged.)")
      .def_static("load", &load, py::arg("path"), py::arg("weights") = "native", py::arg("tokenizer") = "", py::arg("lora") = py::none())
      .def_property_readonly("config", [](const Model& x) { return config_of(x.model->config()); })
      .def_property_readonly("vocab_size", [](const Model& x) { return x.model->config().vocab_size; })
      .def_property_readonly("weight_bytes", [](const Model& x) { return x.model->weight_bytes(); })
      .def_property_readonly("formats", [](const Model& x) { return x.model->format_summary(); })
      .def_property_readonly("bos_id", [](const Model& x) { return x.tok.bos_id(); })
      .def_property_readonly("eos_id", [](const Model& x) { return x.tok.eos_id(); })
      .def(
          "tokenize", [](const Model& x, const std::string& text, bool bos) { return x.tok.encode(text, bos); }, py::arg("text"),
          py::arg("bos") = true)
      .def(
          "detokenize", [](const Model& x, const std::vector<int>& ids) { return x.tok.decode(checked_tokens(x, ids)); }, py::arg("ids"))
      .def("logits", &logits, py::arg("tokens"), "Logits (n, vocab) float32 of every position of `tokens` (a fresh sequence).")
      .def("generate", &generate, py::arg("prompt"), py::arg("max_tokens") = 128, py::arg("temperature") = 0.8f, py::arg("top_p") = 0.95f,
           py::arg("top_k") = 40, py::arg("min_p") = 0.05f, py::arg("seed") = py::none(), py::arg("stop") = std::vector<std::string>{},
           R"(Text continuing `prompt` (BOS first): up to max_tokens, ending at EOS or before a stop string. temperature 0: greedy.)")
      .def("perplexity", &perplexity, py::arg("text"), py::arg("ctx") = 0, py::arg("stride") = 0,
           R"(Perplexity of `text` (one token stream, BOS first) with a sliding window of ctx tokens (default: the model's
context) advancing by stride (default ctx / 2). Returns {'perplexity', 'error', 'mean_nll', 'tokens', 'seconds'}.)")
      .def("__repr__", [](const Model& x) { return "<tensorzip.Model " + x.path + " " + x.model->config().to_string() + ">"; });

  m.def("compress", &compress, py::arg("model"), py::arg("output"), py::arg("method") = "rtn", py::arg("bits") = 4, py::arg("group") = 128,
        py::arg("symmetric") = true, py::arg("calib") = "", py::arg("calib_docs") = 128, py::arg("calib_len") = 256, py::arg("act_order") = false,
        py::arg("clip") = false, py::arg("outliers") = 0, py::arg("lowrank") = 0, py::arg("include") = std::vector<std::string>{},
        py::arg("exclude") = std::vector<std::string>{},
        R"(Compress a LLaMA-family model's linear layers into a tensorzip file (`output`, *.tz), as `tensorzip compress` does.

method 'rtn', 'awq', 'gptq' or 'ternary'; AWQ and GPTQ calibrate layer by layer on `calib`, a text
(documents separated by blank lines; calib_docs of at most calib_len tokens). include / exclude: globs over
layer names (default layers.*). Returns {'output', 'layers': [...per layer errors...], 'bits_per_weight', 'seconds'}.)");
}

}  // namespace tzpy
