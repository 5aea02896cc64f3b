// Memory target: loading a model and generating must keep the process's resident size within
// the model file plus the KV cache plus 10%. Catches a second resident copy of the weights
// (say, the mapped file staying resident next to the copy, or repacking that duplicates).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <unistd.h>

#include "backend/machine.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"
#include "tools/synth.h"

namespace {

// Sanitizers shadow every allocation (ASan: an eighth more, plus quarantined frees), so
// resident sizes mean nothing there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TF_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TF_UNDER_SANITIZER 1
#endif
#endif

TEST(Memory, ResidentWithinFilePlusKvPlusTenPercent) {
#ifdef TF_UNDER_SANITIZER
  GTEST_SKIP() << "resident sizes are not meaningful under a sanitizer";
#endif
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-llama-spm.gguf");
  const auto path = std::filesystem::temp_directory_path() /
                    ("tf_memory_" + std::to_string(::getpid()) + ".gguf");
  tf::tools::SynthOptions so;
  so.out_path = path.string();
  so.vocab_path = tf::test::shared_path("models/vocab/ggml-vocab-llama-spm.gguf");
  // The reference shape cut to 4 layers (~190 MB): large enough that the fixed costs (parsed
  // metadata, tokenizer, scratch, the program itself: ~12 MB here) stay a small share.
  so.dim = 2048;
  so.ffn = 5632;
  so.layers = 4;
  so.heads = 32;
  so.kv_heads = 4;
  so.type = "q4_0";
  so.progress = false;
  const tf::tools::SynthResult made = tf::tools::synth_model(so);
  ASSERT_GT(made.file_bytes, uint64_t(128) << 20);

  for (bool use_mmap : {false, true}) {
    SCOPED_TRACE(use_mmap ? "mapped" : "copied");
    const double before = double(tf::resident_bytes());
    if (before == 0) GTEST_SKIP() << "no /proc/self/statm";
    tf::LoadOptions lo;
    lo.n_ctx = 256;
    lo.n_batch = 32;
    lo.n_threads = 2;
    lo.use_mmap = use_mmap;
    auto engine = tf::Engine::load(path.string(), lo);
    tf::GenerateOptions go;
    go.n_predict = 8;
    go.sampling.temperature = 0;
    go.ignore_eos = true;
    engine->generate("Once upon a time", go);
    const double grown = double(tf::resident_bytes()) - before;
    const double file = double(made.file_bytes);
    const double kv = double(engine->kv_cache_bytes());
    EXPECT_LE(grown, 1.10 * (file + kv)) << "resident grew " << grown / (1 << 20) << " MiB for a "
                                         << file / (1 << 20) << " MiB file and "
                                         << kv / (1 << 20) << " MiB of KV cache";
    // A copy is resident whole (mapped, the embedding rows no token used stay on disk).
    if (!use_mmap) {
      EXPECT_GE(grown, 0.95 * file);
    }
  }
  std::filesystem::remove(path);
}

}  // namespace
