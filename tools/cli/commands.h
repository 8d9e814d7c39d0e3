// Subcommand registration for the tensorzip CLI: each file adds one subcommand to the app.
#pragma once
#include <CLI/CLI.hpp>

namespace tz::cli {

void add_info(CLI::App& app);
void add_inspect(CLI::App& app);
void add_bench(CLI::App& app);
void add_decompose(CLI::App& app);
void add_run(CLI::App& app);
void add_chat(CLI::App& app);
void add_eval(CLI::App& app);
void add_compress(CLI::App& app);
void add_merge(CLI::App& app);
void add_convert(CLI::App& app);
void add_serve(CLI::App& app);
void add_bench_serve(CLI::App& bench);

}  // namespace tz::cli
