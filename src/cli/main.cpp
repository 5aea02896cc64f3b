// tokenfab: command-line entry point. Every failure on bad input becomes one line on stderr
// and exit code 1.
#include <cstdio>
#include <exception>
#include <map>
#include <string>

#include "cli/commands.h"
#include "util/error.h"

namespace {
// One line, whatever the message holds (a template's raise_exception text may span several).
void print_error(const char* what) {
  std::string msg = what;
  for (size_t i = 0; (i = msg.find_first_of("\r\n", i)) != std::string::npos;)
    msg.replace(i, 1, msg[i] == '\n' ? "\\n" : "\\r");
  std::fprintf(stderr, "error: %s\n", msg.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tokenfab: run open-weight language models from GGUF files and Hugging Face directories"};
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
  reg(tf::cli::add_convert);
  reg(tf::cli::add_template);
  reg(tf::cli::add_chat);
  reg(tf::cli::add_serve);
  reg(tf::cli::add_keygen);
  reg(tf::cli::add_plan);
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
    print_error(e.what());
  } catch (const std::bad_alloc&) {
    print_error("out of memory");
  } catch (const std::exception& e) {
    print_error(e.what());
  }
  return 1;
}
