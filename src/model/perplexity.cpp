// Perplexity over documents or a sliding window (the protocol is in llama.h).
#include <chrono>
#include <cmath>

#include "tensorzip/error.h"
#include "tensorzip/llama.h"
#include "tensorzip/memory.h"

namespace tz {
namespace {

std::string strip(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

double PerplexityResult::perplexity() const { return std::exp(mean_nll); }

double PerplexityResult::perplexity_error() const {
  const double var = mean_nll_sq - mean_nll * mean_nll;
  return scored < 2 || !(var > 0) ? 0.0 : perplexity() * std::sqrt(var / double(scored - 1));
}

std::vector<std::vector<int>> split_documents(const std::string& text, const Tokenizer& tok, const std::string& sep,
                                              int max_docs, int ctx) {
  require(!sep.empty(), "split_documents: empty separator");
  std::vector<std::vector<int>> docs;
  size_t start = 0;
  while (max_docs <= 0 || int(docs.size()) < max_docs) {
    size_t end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    const std::string d = strip(text.substr(start, end - start));
    if (!d.empty()) {
      std::vector<int> ids = tok.encode(d, true);
      if (ctx > 0 && int(ids.size()) > ctx) ids.resize(size_t(ctx));
      if (ids.size() >= 2) docs.push_back(std::move(ids));
    }
    if (end == text.size()) break;
    start = end + sep.size();
  }
  return docs;
}

std::vector<std::vector<int>> perplexity_chunks(const std::vector<int>& tokens, int ctx, int bos) {
  require(ctx >= 2, "perplexity: chunks need ctx >= 2");
  std::vector<std::vector<int>> chunks;
  for (size_t b = 0; b + size_t(ctx) <= tokens.size(); b += size_t(ctx)) {
    chunks.emplace_back(tokens.begin() + std::ptrdiff_t(b), tokens.begin() + std::ptrdiff_t(b + size_t(ctx)));
    chunks.back()[0] = bos;
  }
  require(!chunks.empty(), "perplexity: the text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                               std::to_string(ctx));
  return chunks;
}

PerplexityResult evaluate_perplexity(LlamaSession& s, const std::vector<std::vector<int>>& seqs, int ctx, int stride,
                                     const std::function<void(int64_t, int64_t, const PerplexityResult&)>& progress,
                                     int first_scored) {
  require(first_scored >= 1, "perplexity: first_scored must be >= 1");
  require(ctx >= 2 && ctx <= s.max_seq(), "perplexity: ctx must be in [2, " + std::to_string(s.max_seq()) + "]");
  require(stride >= 1 && stride <= ctx, "perplexity: stride must be in [1, ctx]");
  struct Window { size_t seq; int begin, len, score_from; };
  std::vector<Window> windows;
  for (size_t d = 0; d < seqs.size(); ++d) {
    const int n = int(seqs[d].size());
    if (n < 2) continue;
    int scored_to = std::min(first_scored, n);  // tokens [first_scored, scored_to) are scored
    for (int b = 0; scored_to < n; b += stride) {
      const int len = std::min(ctx, n - b);
      windows.push_back({d, b, len, scored_to - b});
      scored_to = b + len;
    }
  }
  require(!windows.empty(), "perplexity: no sequence of at least 2 tokens");
  PerplexityResult r;
  r.windows = int64_t(windows.size());
  const int V = s.vocab_size();
  std::vector<float> logits;
  double nll = 0, nll_sq = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    const Window& win = windows[w];
    const int* ids = seqs[win.seq].data() + win.begin;
    if (logits.size() < size_t(win.len) * size_t(V)) {
      require_memory((size_t(win.len) * size_t(V) - logits.size()) * sizeof(float), "perplexity: logits for a window of " + std::to_string(win.len) + " tokens");
      logits.resize(size_t(win.len) * size_t(V));
    }
    const auto t0 = std::chrono::steady_clock::now();
    s.forward(ids, win.len, 0, logits.data(), true);
    r.forward_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.processed += win.len;
    for (int t = std::max(win.score_from, 1); t < win.len; ++t) {
      const float* lg = &logits[size_t(t - 1) * size_t(V)];
      double mx = lg[0];
      for (int i = 1; i < V; ++i) mx = std::max(mx, double(lg[i]));
      double sum = 0;
      for (int i = 0; i < V; ++i) sum += std::exp(double(lg[i]) - mx);
      const double term = mx + std::log(sum) - double(lg[ids[t]]);
      require(std::isfinite(term), "perplexity: the logits at position " + std::to_string(win.begin + t - 1) + " of sequence " +
                                       std::to_string(win.seq) + " are not finite (the model produced NaN or Inf)");
      nll += term;
      nll_sq += term * term;
      ++r.scored;
    }
    if (r.scored > 0) r.mean_nll = nll / double(r.scored), r.mean_nll_sq = nll_sq / double(r.scored);
    if (progress) progress(int64_t(w) + 1, r.windows, r);
  }
  return r;
}

}  // namespace tz
