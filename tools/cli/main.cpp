// tensorzip command-line tool: one binary, one subcommand per file in tools/cli/.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/runtime.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"tensorzip: neural-network tensor math on compressed and structured weights"};
  app.require_subcommand(1);
  // Applied as parsed: the main app's options run before the subcommand's, so a -t after the subcommand wins.
  app.add_option_function<int>("--threads", [](const int& n) { tz::set_num_threads(n); }, "Threads for every kernel (default: all cores)")
      ->check(CLI::Range(1, 1024));
  app.set_version_flag("--version", "tensorzip 0.1.0");
  tz::set_log_callback([](tz::LogLevel level, std::string_view msg) {
    if (level >= tz::LogLevel::Warn) fmt::print(stderr, "tensorzip: {}\n", msg);
  });
  tz::cli::add_info(app);
  tz::cli::add_inspect(app);
  tz::cli::add_bench(app);
  tz::cli::add_decompose(app);
  tz::cli::add_run(app);
  tz::cli::add_chat(app);
  tz::cli::add_eval(app);
  tz::cli::add_compress(app);
  tz::cli::add_merge(app);
  tz::cli::add_convert(app);
  tz::cli::add_serve(app);
  tz::io::install_signal_cleanup();  // Ctrl-C / SIGTERM during a write leave no temporary behind
  // llama.cpp's -ngl and -np are many-letter short options, which CLI11 cannot name: spell them long.
  std::vector<std::string> longs = {"--n-gpu-layers", "--parallel"};
  std::vector<char*> args(argv, argv + argc);
  for (char*& a : args)
    if (std::string_view(a) == "-ngl") a = longs[0].data();
    else if (std::string_view(a) == "-np") a = longs[1].data();
  try {
    app.parse(int(args.size()), args.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, exit 1, like every other error; CLI11's own exit codes (100+) mean nothing to a user.
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    fmt::print(stderr, "tensorzip: error: {} (see --help)\n", msg);
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "tensorzip: error: out of memory (the model or the requested sizes need more than this machine has)\n");
    return 1;
  } catch (const tz::Error& e) {
    fmt::print(stderr, "tensorzip: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tensorzip: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
