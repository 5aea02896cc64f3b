// Each `tokenfab <command>` registers its options on a CLI11 subcommand and returns the
// function that runs it (returning the process exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace tf::cli {

using Runner = std::function<int()>;

Runner add_run(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_membw(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_quantize(CLI::App& app);

}  // namespace tf::cli
