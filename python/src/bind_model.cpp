// tensorzip.Model (load, tokenize, logits, generate, perplexity) and tensorzip.compress: the
// LLaMA-family runner and compressor (llama.h, compress.h) from Python.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "arrays.h"
#include "bindings.h"
#include "tensorzip/chat.h"
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

// One reply being generated: sampled token by token after the prompt, ending at EOS (and BOS, as
// llama2.c's run), an end-of-turn piece, a stop string (the text from it on is dropped; text that
// may begin one is held back until it cannot), max_tokens or the context — as `tensorzip run`.
struct Generator {
  std::shared_ptr<const Model> m;
  std::unique_ptr<tz::LlamaSession> s;
  std::unique_ptr<tz::Sampler> sampler;
  std::vector<float> logits;
  int pos = 0, prev = 0, left = 0;
  bool stop_at_bos = true;
  std::vector<std::string> stop_pieces, stop_strings;
  std::string pending;
  bool done = false;

  // The text that may be shown after one more token ("" is possible); `done` when the reply ended.
  std::string step() {
    if (done) return "";
    const tz::LlamaConfig& c = m->model->config();
    if (left <= 0 || pos >= c.seq_len) return finish(pending);
    const int next = sampler->sample(logits.data());
    const std::string& piece = m->tok.piece(next);
    if (next == m->tok.eos_id() || (stop_at_bos && next == m->tok.bos_id()) ||
        std::find(stop_pieces.begin(), stop_pieces.end(), piece) != stop_pieces.end())
      return finish(pending);
    pending += m->tok.decode_piece(prev, next);
    size_t cut = std::string::npos;
    for (const auto& st : stop_strings) cut = std::min(cut, pending.find(st));
    if (cut != std::string::npos) return finish(pending.substr(0, cut));
    size_t keep = 0;  // the longest tail of pending that begins a stop string
    for (const auto& st : stop_strings)
      for (size_t k = std::min(st.size() - 1, pending.size()); k > keep; --k)
        if (pending.compare(pending.size() - k, k, st, 0, k) == 0) {
          keep = k;
          break;
        }
    std::string shown = pending.substr(0, pending.size() - keep);
    pending.erase(0, pending.size() - keep);
    prev = next;
    --left;
    if (left > 0 && pos < c.seq_len) s->forward(&next, 1, pos++, logits.data());
    return shown;
  }
  std::string finish(std::string text) {
    done = true;
    pending.clear();
    return text;
  }
};

struct SampleArgs {
  int max_tokens;
  float temperature, top_p, min_p;
  int top_k;
  py::object seed;
  std::vector<std::string> stop;
};

std::unique_ptr<Generator> start(const std::shared_ptr<Model>& m, const std::string& text, const SampleArgs& a,
                                 std::vector<std::string> stop_pieces, bool stop_at_bos) {
  if (a.max_tokens < 0) value_error("max_tokens: must be >= 0");
  for (const auto& st : a.stop)
    if (st.empty()) value_error("stop: empty stop string");
  const uint64_t sd = a.seed.is_none() ? uint64_t(std::chrono::system_clock::now().time_since_epoch().count()) : a.seed.cast<uint64_t>();
  py::gil_scoped_release nogil;
  const tz::LlamaConfig& c = m->model->config();
  auto g = std::make_unique<Generator>();
  g->m = m;
  std::vector<int> ids = m->tok.encode(text, true, false, /*parse_special=*/true);  // as llama-cli and `tensorzip run`
  if (ids.empty()) ids.push_back(m->tok.bos_id());
  if (int(ids.size()) >= c.seq_len)
    throw tz::Error("generate: the prompt's " + std::to_string(ids.size()) + " tokens fill the context (" + std::to_string(c.seq_len) + ")");
  g->s = std::make_unique<tz::LlamaSession>(*m->model, c.seq_len);
  g->logits.resize(size_t(c.vocab_size));
  g->s->forward(ids.data(), int(ids.size()), 0, g->logits.data());
  g->sampler = std::make_unique<tz::Sampler>(c.vocab_size, a.temperature, a.top_p, sd);
  g->sampler->set_top_k(a.top_k);
  g->sampler->set_min_p(a.min_p);
  g->pos = int(ids.size());
  g->prev = ids.back();
  g->left = a.max_tokens;
  g->stop_at_bos = stop_at_bos;
  g->stop_pieces = std::move(stop_pieces);
  g->stop_strings = a.stop;
  return g;
}

// The whole reply, or (stream) an iterator over its pieces of text.
py::object reply(std::unique_ptr<Generator> g, bool stream) {
  if (stream) return py::cast(std::move(g));
  std::string text;
  {
    py::gil_scoped_release nogil;
    while (!g->done) text += g->step();
  }
  return py::str(text);
}

std::string chat_format(const Model& m, const std::string& tmpl) {
  if (!tmpl.empty()) {
    const std::string name = tz::detect_chat_template(tmpl);
    if (name.empty()) value_error("template: '" + tmpl + "' is not a built-in format (chatml, llama2, llama3, gemma, phi3, mistral-v7, ...)");
    return name;
  }
  if (m.src.chat_template.empty()) value_error(m.path + ": the model has no chat template; pass template='chatml' (or llama3, gemma, ...)");
  const std::string name = tz::detect_chat_template(m.src.chat_template);
  if (name.empty()) value_error(m.path + ": its chat template matches no built-in format; pass template=NAME");
  return name;
}

std::vector<tz::ChatMessage> messages_of(const py::list& msgs) {
  std::vector<tz::ChatMessage> out;
  for (auto item : msgs) {
    if (!py::isinstance<py::dict>(item)) type_error("messages: each message is a dict {'role': ..., 'content': ...}");
    auto d = item.cast<py::dict>();
    if (!d.contains("role") || !d.contains("content")) value_error("messages: each message needs 'role' and 'content'");
    const std::string role = py::str(d["role"]);
    if (role != "system" && role != "user" && role != "assistant") value_error("messages: role '" + role + "' is not system, user or assistant");
    out.push_back({role, py::str(d["content"])});
  }
  if (out.empty()) value_error("messages: empty");
  return out;
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
      .def(
          "generate",
          [](const std::shared_ptr<Model>& x, const std::string& prompt, int max_tokens, float temperature, float top_p, int top_k, float min_p,
             const py::object& seed, const std::vector<std::string>& stop, bool stream) {
            return reply(start(x, prompt, {max_tokens, temperature, top_p, min_p, top_k, seed, stop}, tz::end_of_turn_pieces(x->tok), true),
                         stream);
          },
          py::arg("prompt"), py::arg("max_tokens") = 128, py::arg("temperature") = 0.8f, py::arg("top_p") = 0.95f, py::arg("top_k") = 40,
          py::arg("min_p") = 0.05f, py::arg("seed") = py::none(), py::arg("stop") = std::vector<std::string>{}, py::arg("stream") = false,
          R"(Text continuing `prompt` (BOS first; special tokens in it are tokens), as `tensorzip run` writes it: up to
max_tokens, ending at EOS, an end-of-turn token or before a stop string. temperature 0: greedy.
stream=True: an iterator over the pieces of text as they are sampled.)")
      .def(
          "chat",
          [](const std::shared_ptr<Model>& x, const py::list& messages, int max_tokens, float temperature, float top_p, int top_k, float min_p,
             const py::object& seed, const std::vector<std::string>& stop, const std::string& tmpl, bool stream) {
            const std::string fmt = chat_format(*x, tmpl);
            const std::string text = tz::apply_chat_template(fmt, messages_of(messages), true);
            return reply(start(x, text, {max_tokens, temperature, top_p, min_p, top_k, seed, stop}, tz::chat_stop_strings(fmt), false), stream);
          },
          py::arg("messages"), py::arg("max_tokens") = 512, py::arg("temperature") = 0.8f, py::arg("top_p") = 0.95f, py::arg("top_k") = 40,
          py::arg("min_p") = 0.05f, py::arg("seed") = py::none(), py::arg("stop") = std::vector<std::string>{}, py::arg("template") = "",
          py::arg("stream") = false,
          R"(The assistant's reply to `messages` ([{'role': 'system'|'user'|'assistant', 'content': ...}]) in the model's
chat format (its template, or template='chatml', 'llama3', ...), as `tensorzip run --chat` writes it.)")
      .def("perplexity", &perplexity, py::arg("text"), py::arg("ctx") = 0, py::arg("stride") = 0,
           R"(Perplexity of `text` (one token stream, BOS first) with a sliding window of ctx tokens (default: the model's
context) advancing by stride (default ctx / 2). Returns {'perplexity', 'error', 'mean_nll', 'tokens', 'seconds'}.)")
      .def("__repr__", [](const Model& x) { return "<tensorzip.Model " + x.path + " " + x.model->config().to_string() + ">"; });

  py::class_<Generator, std::unique_ptr<Generator>>(m, "TextStream", "Pieces of generated text as they are sampled (Model.generate / chat with stream=True).")
      .def("__iter__", [](Generator& g) -> Generator& { return g; }, py::return_value_policy::reference_internal)
      .def("__next__", [](Generator& g) {
        std::string piece;
        {
          py::gil_scoped_release nogil;
          while (!g.done && piece.empty()) piece = g.step();
        }
        if (piece.empty() && g.done) throw py::stop_iteration();
        return piece;
      });

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
