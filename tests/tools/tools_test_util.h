// Helpers for the synth / quantize tests: scratch files, a small in-memory vocabulary, running
// a model, and comparing tensors.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "tensor/quants.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"

namespace tf::test {

// A path in the temp folder, unique to this process; removed by the caller.
inline std::string tmp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("tokenfab_tools_" + std::to_string(getpid()) + "_" + name))
      .string();
}

// Removes the file when the test ends, whatever happens.
struct TmpFile {
  std::string path;
  explicit TmpFile(const std::string& name) : path(tmp_file(name)) {}
  ~TmpFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

// A vocabulary-only GGUF with an SPM ("llama") tokenizer: <unk> <s> </s>, the 256 byte
// tokens and a few pieces, 300 tokens in all. Returns the path.
inline void write_small_vocab(const std::string& path) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    types.push_back(6);
  }
  const char* pieces[] = {"\xE2\x96\x81",   "h", "i", "\xE2\x96\x81h",
                          "\xE2\x96\x81hi", "e", "l", "o"};
  for (const char* p : pieces) {
    tokens.push_back(p);
    types.push_back(1);
  }
  while (tokens.size() < 300) {  // filler pieces, so the vocabulary is not tiny
    tokens.push_back("x" + std::to_string(tokens.size()));
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -float(i);
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.write(path);
}

// Runs the model over a few tokens and checks every logit is finite; returns the last row.
inline std::vector<float> logits_after(const Model& m, const std::vector<TokenId>& tokens) {
  ContextParams cp;
  cp.n_ctx = 64;
  cp.n_threads = 1;
  Context ctx(m, cp);
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i)
    b.add(tokens[i], int32_t(i), 0, i + 1 == tokens.size());
  ctx.decode(b);
  return std::vector<float>(ctx.logits(0), ctx.logits(0) + ctx.n_vocab());
}

inline bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// Greedy generation of n tokens from a text prompt.
inline std::vector<TokenId> greedy(const std::string& model, const std::string& prompt, int n) {
  LoadOptions lo;
  lo.n_threads = 1;
  lo.n_ctx = 256;
  auto e = Engine::load(model, lo);
  GenerateOptions go;
  go.n_predict = n;
  go.ignore_eos = true;
  go.sampling.temperature = 0;
  return e->generate(prompt, go).tokens;
}

// Greedy decoding on the model directly, recording at each step how far the chosen logit is
// ahead of the runner-up: a small gap is a near tie that any rounding may flip.
struct GreedyStep {
  TokenId id;
  float gap;
};
inline std::vector<GreedyStep> greedy_steps(const std::string& path, const std::string& prompt,
                                            int n) {
  LoadOptions lo;
  lo.n_threads = 1;
  lo.n_ctx = 256;
  auto engine = Engine::load(path, lo);
  const std::vector<TokenId> ids = engine->tokenize(prompt);
  ContextParams cp;
  cp.n_ctx = 256;
  cp.n_threads = 1;
  Context ctx(engine->model(), cp);
  Batch b;
  for (size_t i = 0; i < ids.size(); ++i) b.add(ids[i], int32_t(i), 0, i + 1 == ids.size());
  std::vector<GreedyStep> out;
  for (int step = 0; step < n; ++step) {
    ctx.decode(b);
    const float* l = ctx.logits(0);
    TokenId best = 0;
    for (TokenId t = 1; t < ctx.n_vocab(); ++t)
      if (l[t] > l[best]) best = t;
    float second = -INFINITY;
    for (TokenId t = 0; t < ctx.n_vocab(); ++t)
      if (t != best) second = std::max(second, l[t]);
    out.push_back({best, l[best] - second});
    b.clear();
    b.add(best, int32_t(ids.size()) + step, 0, true);
  }
  return out;
}

// All values of a tensor as floats.
inline std::vector<float> tensor_values(const gguf::TensorInfo& t) {
  const int64_t n = t.dims[0];
  const int64_t rows = t.n_elements() / n;
  std::vector<float> v(size_t(t.n_elements()));
  const size_t rb = row_bytes(t.type, n);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(t.type, t.data + size_t(r) * rb, v.data() + size_t(r * n), n);
  return v;
}

// Root-mean-square error of b relative to the RMS of a.
inline double relative_rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += double(a[i] - b[i]) * double(a[i] - b[i]);
    s += double(a[i]) * double(a[i]);
  }
  return s > 0 ? std::sqrt(e / s) : std::sqrt(e);
}

struct CliResult {
  int code;
  std::string err;
};

// Runs the tokenfab binary; stdout is discarded, stderr returned.
inline CliResult run_cli(const std::vector<std::string>& args) {
  std::string cmd = TF_CLI_PATH;
  for (const auto& a : args) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " " + q + "'";
  }
  const std::string err_file = tmp_file("stderr");
  cmd += " >/dev/null 2>" + err_file;
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_file);
  std::filesystem::remove(err_file);
  return r;
}

}  // namespace tf::test
