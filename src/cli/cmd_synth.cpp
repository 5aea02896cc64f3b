// tokenfab synth: write a random-weight model of a given shape, for offline benchmarks.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"
#include "tools/synth.h"

namespace tf::cli {

Runner add_synth(CLI::App& app) {
  auto o = std::make_shared<tools::SynthOptions>();
  CLI::App* c = app.add_subcommand(
      "synth", "write a random-weight model of any supported shape (for benchmarks)");
  c->add_option("-o,--output", o->out_path, "output GGUF file")->required();
  c->add_option("--vocab", o->vocab_path, "GGUF file to copy the tokenizer from")->required();
  c->add_option("--arch", o->arch,
                "llama, qwen2, qwen3, qwen3moe, gemma, gemma2, gemma3, phi3 or deepseek2")
      ->capture_default_str();
  c->add_option("--experts", o->experts, "experts per layer (mixture of experts; 0: dense)")
      ->capture_default_str();
  c->add_option("--experts-used", o->experts_used, "experts per token")->capture_default_str();
  c->add_option("--expert-ffn", o->expert_ffn, "feed-forward size of an expert (0: --ffn)")
      ->capture_default_str();
  c->add_option("--q-lora", o->q_lora, "deepseek2: q latent size (0: a plain attn_q)")
      ->capture_default_str();
  c->add_option("--kv-lora", o->kv_lora, "deepseek2: KV latent size (what the cache holds)")
      ->capture_default_str();
  c->add_option("--rope-dim", o->rope_dim, "deepseek2: rope part of a key head")
      ->capture_default_str();
  c->add_option("--nope-dim", o->nope_dim, "deepseek2: non-rope part of a key head")
      ->capture_default_str();
  c->add_option("--v-dim", o->v_dim, "deepseek2: value head size")->capture_default_str();
  c->add_option("--dense-lead", o->dense_lead, "deepseek2: leading dense layers")
      ->capture_default_str();
  c->add_option("--shared-experts", o->shared_experts, "deepseek2: shared experts")
      ->capture_default_str();
  c->add_option("--expert-groups", o->expert_groups, "deepseek2: expert groups")
      ->capture_default_str();
  c->add_option("--expert-groups-used", o->expert_groups_used,
                "deepseek2: groups a token chooses from")
      ->capture_default_str();
  c->add_option("--gating", o->gating, "deepseek2: softmax (V2) or sigmoid (V3)")
      ->capture_default_str();
  c->add_option("--dim", o->dim, "embedding size")->capture_default_str();
  c->add_option("--ffn", o->ffn, "feed-forward size")->capture_default_str();
  c->add_option("--layers", o->layers, "number of layers")->capture_default_str();
  c->add_option("--heads", o->heads, "attention heads")->capture_default_str();
  c->add_option("--kv-heads", o->kv_heads, "key/value heads")->capture_default_str();
  c->add_option("--head-dim", o->head_dim, "size of a head (0: dim / heads)")
      ->capture_default_str();
  c->add_option("--type", o->type, "weight type: " + tools::mix_names())->capture_default_str();
  c->add_option("--ctx", o->ctx, "training context length (metadata)")->capture_default_str();
  c->add_option("--window", o->window,
                "sliding window of gemma2/gemma3/phi3 (-1: the released models'; 0: none)")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "random seed")->capture_default_str();
  c->add_flag("--tied", o->tied, "no output.weight: token_embd doubles as the output matrix");
  c->add_flag("--pure", o->pure, "every matrix in the base type (no llama.cpp mixture rules)");
  c->add_option("-t,--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, 1024));
  return [o] {
    const tools::SynthResult r = tools::synth_model(*o);
    std::fprintf(stderr, "synth: %s: %.1fM params, vocab %lld, %s, %s in %.1f s\n",
                 o->out_path.c_str(), double(r.n_params) / 1e6, (long long)r.n_vocab,
                 o->type.c_str(), tools::format_bytes(r.file_bytes).c_str(), r.seconds);
    return 0;
  };
}

}  // namespace tf::cli
