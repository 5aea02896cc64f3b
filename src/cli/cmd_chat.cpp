// tokenfab chat: an interactive chat in the terminal. The conversation is rendered through the
// model's chat template every turn and generated with the engine's prefix reuse, so earlier
// turns are not processed again.
//
// Input is one user message per line (empty lines are skipped). On a terminal "> " prompts on
// stderr; Ctrl-C stops a reply (what was generated stays in the conversation) or, at the
// prompt, drops the line; Ctrl-D quits. stdout carries only the replies, each followed by a
// newline (or, with --json, one JSON object per turn), so a pipe can drive it.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "cli/chat_common.h"
#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) {
  g_interrupted = 1;
}

struct ChatArgs {
  std::string model, system;
  SamplingArgs sampling;
  int n_predict = -1;
  TemplateChoice choice;
  int64_t ctx = 0;
  int threads = 0;
  std::string kv_type = "f16", quant;
  bool mmap = false, json = false, reuse_replies = false;
};

// Lines from a file descriptor. poll() before read(): poll is never restarted after a signal,
// so Ctrl-C at the prompt is seen there even though SIGINT's handler restarts system calls
// (which keeps writes to stdout whole).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  enum Result { kLine, kEof, kInterrupted };
  Result next(std::string& line) {
    for (;;) {
      if (const size_t nl = buf_.find('\n'); nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return kLine;
      }
      if (eof_) {
        if (buf_.empty()) return kEof;
        line = std::move(buf_);  // a last line without its newline
        buf_.clear();
        return kLine;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, -1) < 0) {
        if (errno != EINTR) throw Error(std::string("reading stdin: ") + std::strerror(errno));
        if (g_interrupted) {
          g_interrupted = 0;
          buf_.clear();  // the terminal dropped the half-typed line too
          return kInterrupted;
        }
        continue;
      }
      char chunk[4096];
      const ssize_t n = read(fd_, chunk, sizeof chunk);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        throw Error(std::string("reading stdin: ") + std::strerror(errno));
      }
      if (n == 0) eof_ = true;
      buf_.append(chunk, size_t(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

void put(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

int chat(const ChatArgs& a) {
  LoadOptions lo;
  lo.n_threads = a.threads;
  lo.n_ctx = a.ctx;
  lo.use_mmap = a.mmap;
  lo.quant = a.quant;
  lo.kv_type = parse_kv_type(a.kv_type);
  auto engine = Engine::load(a.model, lo);
  const ChosenTemplate t = choose_template(a.choice, &engine->model().file(), &engine->tokenizer());

  GenerateOptions go;
  go.n_predict = a.n_predict;
  go.sampling = a.sampling.params();
  go.reuse_cache = true;
  go.reuse_generated = a.reuse_replies;

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);

  const bool tty = isatty(STDIN_FILENO);
  if (tty)
    std::fprintf(stderr, "chatting with %s (%s); Ctrl-C stops a reply, Ctrl-D quits\n",
                 a.model.c_str(), t.origin.c_str());
  chat::ChatInputs in;
  in.add_generation_prompt = true;
  if (!a.system.empty()) in.messages.push_back({{"role", "system"}, {"content", a.system}});
  LineReader reader(STDIN_FILENO);
  std::string line;
  for (;;) {
    if (tty) std::fprintf(stderr, "> ");
    const LineReader::Result r = reader.next(line);
    if (r == LineReader::kEof) break;
    if (r == LineReader::kInterrupted) {
      if (tty) std::fprintf(stderr, "\n(Ctrl-D quits)\n");
      continue;
    }
    if (line.empty()) continue;
    in.messages.push_back({{"role", "user"}, {"content", line}});
    const std::string prompt = render(t, in, "the conversation");
    const std::vector<TokenId> ids = chat::tokenize_prompt(engine->tokenizer(), prompt);
    if (int64_t(ids.size()) > engine->n_ctx())
      throw Error("the conversation is " + std::to_string(ids.size()) +
                  " tokens, more than the context size " + std::to_string(engine->n_ctx()) +
                  " (use a larger -c)");

    g_interrupted = 0;
    std::function<bool(const std::string&)> stream = [&](const std::string& piece) {
      if (!a.json) put(piece);
      return !g_interrupted;
    };
    const Generation g = engine->generate_ids(ids, go, stream);
    g_interrupted = 0;
    in.messages.push_back({{"role", "assistant"}, {"content", g.text}});

    const Timings& tm = g.timings;
    if (a.json) {
      nlohmann::json j;
      j["reply"] = g.text;
      j["prompt_tokens"] = tm.prompt_tokens;
      j["cached_tokens"] = tm.cached_tokens;
      j["completion_tokens"] = int64_t(g.tokens.size());
      j["prompt_ids"] = g.prompt_ids;
      j["stop_reason"] = g.stop_reason;
      j["timings"] = {{"prompt_ms", tm.prompt_ms},
                      {"prompt_per_second", tm.prompt_tps()},
                      {"predicted_ms", tm.gen_ms},
                      {"predicted_per_second", tm.gen_tps()}};
      put(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    } else {
      put("\n");
      std::fprintf(stderr,
                   "[prompt: %lld tokens processed, %lld cached, %.1f tokens/s | reply: %lld "
                   "tokens, %.1f tokens/s | stop: %s]\n",
                   (long long)tm.prompt_tokens, (long long)tm.cached_tokens, tm.prompt_tps(),
                   (long long)tm.gen_tokens, tm.gen_tps(), g.stop_reason.c_str());
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  return 0;
}
}  // namespace

Runner add_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* c = app.add_subcommand("chat", "chat with a model in the terminal");
  c->add_option("-m,--model", a->model, "GGUF model file or Hugging Face model directory")
      ->required();
  c->add_option(
      "--quant", a->quant,
      "Hugging Face directory: convert the matrices to this type on load (f16, q8_0, q4_k_m, ...)");
  c->add_option("--system", a->system, "system message opening the conversation");
  c->add_option("-n,--n-predict", a->n_predict,
                "most tokens per reply (-1: until end of turn / context full)")
      ->check(CLI::Range(-1, 1 << 30));
  add_sampling_options(c, a->sampling);
  c->add_option("--chat-template", a->choice.file,
                "template file instead of the model's (plain Jinja, or .json)");
  c->add_option("--template-variant", a->choice.variant,
                "the model's named template, e.g. tool_use (tokenizer.chat_template.NAME)");
  c->add_option("-t,--threads", a->threads, "threads (0 = auto)")->check(CLI::Range(0, 1024));
  c->add_option("-c,--ctx-size", a->ctx, "context size (0 = model's, at most 4096)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  add_kv_type_option(c, a->kv_type);
  c->add_flag("--mmap", a->mmap, "map the model file instead of reading it into memory");
  c->add_flag("--reuse-replies", a->reuse_replies,
              "reuse the replies' cached K/V too (faster; not bit-identical to a fresh run for "
              "F32/F16 weights)");
  c->add_flag("--json", a->json,
              "one JSON object per turn on stdout: reply, prompt_tokens (processed), "
              "cached_tokens, completion_tokens, prompt_ids");
  return [a] { return chat(*a); };
}

}  // namespace tf::cli
