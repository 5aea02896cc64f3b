// tokenfab: command-line entry point. Every failure on bad input becomes one line on stderr
// and exit code 1.
#include <cstdio>
#include <exception>
#include <map>

#include "cli/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"tokenfab: run open-weight language models from GGUF files"};
  app.require_subcommand(1);
  std::map<CLI::App*, tf::cli::Runner> runners;
  auto reg = [&](tf::cli::Runner (*add)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    tf::cli::Runner r = add(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(tf::cli::add_run);
  reg(tf::cli::add_info);
  reg(tf::cli::add_tokenize);
  reg(tf::cli::add_perplexity);
  reg(tf::cli::add_bench);
  reg(tf::cli::add_membw);
  reg(tf::cli::add_synth);
  reg(tf::cli::add_quantize);
  reg(tf::cli::add_serve);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 1;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    return 1;
  } catch (const tf::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
