// Helpers shared by the subcommands: argument validators whose messages read as one short line
// ("must be > 0", not CLI11's range up to the largest double), and the list of files a model
// argument reads (for refusing an output path that would overwrite one of them).
#pragma once
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tensorzip/runtime.h"

namespace tz::cli {

namespace detail {
inline bool parse_number(const std::string& s, double& v) {
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return !s.empty() && end != nullptr && *end == '\0' && std::isfinite(v);
}
}  // namespace detail

// A finite number > 0.
inline CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        double v;
        return detail::parse_number(s, v) && v > 0 ? std::string() : "must be > 0, got '" + s + "'";
      },
      "> 0", "positive");
}

// A finite number >= 0.
inline CLI::Validator non_negative() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        double v;
        return detail::parse_number(s, v) && v >= 0 ? std::string() : "must be >= 0, got '" + s + "'";
      },
      ">= 0", "non_negative");
}

// The files reading `model` touches: the model itself, `extra` inputs, and the tokenizer files
// looked for beside a model file when none is given.
inline std::vector<std::string> model_inputs(const std::string& model, std::vector<std::string> extra) {
  extra.push_back(model);
  if (!model.empty() && !std::filesystem::is_directory(model)) {
    const auto dir = std::filesystem::path(model).parent_path();
    for (const char* t : {"tokenizer.bin", "tok512.bin", "config.json", "tokenizer.json"}) extra.push_back((dir / t).string());
  }
  return extra;
}

// -t/--threads after the subcommand (as llama-cli takes it; the same as --threads before it).
inline void add_threads_option(CLI::App* c) {
  c->add_option_function<int>("-t,--threads", [](const int& n) { set_num_threads(n); }, "Threads for every kernel (default: all cores)")
      ->check(CLI::Range(1, 1024));
}

// llama-cli's -ngl / --n-gpu-layers: accepted, with a note that every layer runs on the CPU
// (main() spells -ngl as --n-gpu-layers for CLI11, whose short options are one letter).
inline void add_gpu_layers_option(CLI::App* c) {
  c->add_option_function<int>(
       "--n-gpu-layers", [](const int&) { fmt::print(stderr, "tensorzip: -ngl: there is no GPU offload; every layer runs on the CPU\n"); },
       "Accepted for llama-cli's -ngl; tensorzip runs every layer on the CPU")
      ->check(CLI::Range(-1, 1 << 20));
}

}  // namespace tz::cli
