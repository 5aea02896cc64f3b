// Each `tokenfab <command>` registers its options on a CLI11 subcommand and returns the
// function that runs it (returning the process exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

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
Runner add_template(CLI::App& app);

// The KV cache type option shared by run, perplexity and bench (parsed with parse_kv_type).
inline void add_kv_type_option(CLI::App* c, std::string& kv_type) {
  c->add_option("--kv-type", kv_type, "KV cache type: f16 or q8_0 (half the memory)")
      ->check(CLI::IsMember({"f16", "q8_0"}));
}

}  // namespace tf::cli
