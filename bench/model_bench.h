// `tensorzip bench model`: prefill and decode tokens/s of one LLaMA model with its linear layers in
// each weight format (f32, bf16, 4-bit, 2-bit ...), every ratio against f32 in the same run; with
// --text, the perplexity of each format alongside.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace tz::bench {

struct ModelBenchOptions {
  std::string model;               // a model file / directory, or empty for --synthetic
  std::string synthetic = "7b:2";  // "7b:LAYERS" (LLaMA-2-7B layer shapes) or "DIM,HIDDEN,HEADS,LAYERS"
  std::vector<std::string> formats = {"f32", "bf16", "q4", "q2"};
  int prefill = 256, decode = 16;
  std::string text;                // with a real model: perplexity per format on this text
  int max_docs = 100;              // documents (split on blank lines) scored for the perplexity
  bool baseline = true;             // false: no f32 pass (ratios and the error are then not shown)
  std::vector<int> threads;
  int warmup = 1, repeats = 5;
  double budget_s = 4.0;
};

int model_bench_cases(const ModelBenchOptions& o);
void bench_model(const ModelBenchOptions& o, Reporter& rep, const std::function<void(const std::string&)>& progress);

}  // namespace tz::bench
