// Real GGUF files from ../shared (skipped cleanly when it is absent).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "format/gguf.h"
#include "test_util.h"

namespace tf::gguf {
namespace {

std::vector<std::string> gguf_files_in(const std::string& rel_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(tf::test::shared_path(rel_dir), ec))
    if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(GgufRealFiles, EveryFileOpens) {
  TF_REQUIRE_SHARED("models/gguf");
  auto files = gguf_files_in("models/gguf");
  auto vocab = gguf_files_in("models/vocab");
  files.insert(files.end(), vocab.begin(), vocab.end());
  ASSERT_FALSE(files.empty());
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    std::unique_ptr<File> f;
    ASSERT_NO_THROW(f = File::open(path));
    EXPECT_GE(f->version(), 2u);
    EXPECT_FALSE(f->get_string("general.architecture").empty());
    for (const auto& [key, value] : f->metadata()) EXPECT_FALSE(value.to_string().empty()) << key;
    for (const auto& t : f->tensors()) {
      EXPECT_NE(t.data, nullptr);
      EXPECT_LE(f->data_offset() + t.offset + t.nbytes, f->file_size()) << t.name;
    }
  }
}

TEST(GgufRealFiles, Stories260K) {
  TF_REQUIRE_SHARED("models/gguf/stories260K.gguf");
  auto f = File::open(tf::test::shared_path("models/gguf/stories260K.gguf"));
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  const TensorInfo* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(emb->type, DType::F32);
  EXPECT_EQ(emb->nbytes, 64u * 512u * 4u);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 512u);
}

TEST(GgufRealFiles, TinyStories656K) {
  TF_REQUIRE_SHARED("models/gguf/TinyStories-656K.f16.gguf");
  auto f = File::open(tf::test::shared_path("models/gguf/TinyStories-656K.f16.gguf"));
  EXPECT_EQ(f->tensors().size(), 20u);
  EXPECT_EQ(f->metadata().size(), 32u);
}

TEST(GgufRealFiles, LlamaBpeVocab) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-llama-bpe.gguf");
  auto f = File::open(tf::test::shared_path("models/vocab/ggml-vocab-llama-bpe.gguf"));
  EXPECT_EQ(f->tensors().size(), 0u);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 128256u);
  const Value* tokens = f->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->to_string(2).rfind("[str x128256: \"", 0), 0u) << tokens->to_string(2);
}

TEST(GgufRealFiles, WriterReproducesMetadata) {
  // Rewriting a real file's metadata and tensors with our writer gives an equivalent file.
  TF_REQUIRE_SHARED("models/gguf/stories260K.gguf");
  auto f = File::open(tf::test::shared_path("models/gguf/stories260K.gguf"));
  Writer w;
  for (const auto& [key, value] : f->metadata()) w.set(key, value);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, t.data, t.nbytes);
  auto bytes = w.to_bytes();
  auto g = File::from_memory(bytes.data(), bytes.size(), "rewritten.gguf");
  ASSERT_EQ(g->metadata().size(), f->metadata().size());
  for (size_t k = 0; k < f->metadata().size(); ++k) {
    EXPECT_EQ(g->metadata()[k].first, f->metadata()[k].first);
    EXPECT_EQ(g->metadata()[k].second.to_string(1000000),
              f->metadata()[k].second.to_string(1000000));
  }
  ASSERT_EQ(g->tensors().size(), f->tensors().size());
  for (size_t k = 0; k < f->tensors().size(); ++k) {
    const auto &a = f->tensors()[k], &b = g->tensors()[k];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dims, b.dims);
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
  }
}

}  // namespace
}  // namespace tf::gguf
