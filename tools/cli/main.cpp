// tensorzip command-line tool: one binary, one subcommand per file in tools/cli/.
#include <fmt/core.h>

#include <CLI/CLI.hpp>

#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/runtime.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"tensorzip: neural-network tensor math on compressed and structured weights"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "Threads for every kernel (default: all cores)")->check(CLI::Range(1, 1024));
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
  app.parse_complete_callback([&] {
    if (threads > 0) tz::set_num_threads(threads);
  });
  tz::io::install_signal_cleanup();  // Ctrl-C / SIGTERM during a write leave no temporary behind
  try {
    app.parse(argc, argv);
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
