// Writes a handful of small, valid GGUF files into a directory, as the fuzzer's seed corpus.
// Usage: gguf_fuzz_seeds <dir>
// Seeds are generated rather than checked in so they always match the current Writer, and
// together they cover every value type, nested arrays, several tensor types and alignments.
#include <cstdio>
#include <string>
#include <vector>

#include "format/gguf.h"

using tf::DType;
using tf::gguf::Value;
using tf::gguf::ValueType;
using tf::gguf::Writer;

namespace {

Value num(ValueType t, int64_t x) {
  Value v;
  v.type = t;
  v.i = x;  // fine for unsigned types too: the seeds only use small non-negative values there
  return v;
}

Value array(ValueType elem, std::vector<Value> items) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

void add_tensor(Writer& w, const std::string& name, DType type, std::vector<int64_t> dims) {
  size_t n = *tf::row_bytes_checked(type, dims[0]);
  for (size_t d = 1; d < dims.size(); ++d) n *= size_t(dims[d]);
  std::vector<uint8_t> data(n);
  for (size_t k = 0; k < n; ++k) data[k] = uint8_t(k * 37 + 11);
  w.add_tensor(name, type, std::move(dims), data.data(), n);
}

Writer all_value_types() {
  Writer w;
  w.set("u8", num(ValueType::UINT8, 200));
  w.set("i8", num(ValueType::INT8, -100));
  w.set("u16", num(ValueType::UINT16, 60000));
  w.set("i16", num(ValueType::INT16, -30000));
  w.set_u32("u32", 4000000000u);
  w.set_i32("i32", -2000000000);
  w.set_f32("f32", 3.5f);
  w.set_bool("bool", true);
  w.set_string("str", "hello");
  w.set_u64("u64", 1ull << 40);
  w.set("i64", num(ValueType::INT64, -(1ll << 40)));
  Value f64;
  f64.type = ValueType::FLOAT64;
  f64.f = 1e-9;
  w.set("f64", f64);
  w.set_f32_array("f32s", {1.0f, -2.0f, 0.5f});
  w.set_i32_array("i32s", {1, -2, 3});
  w.set_string_array("strs", {"a", "", "ccc"});
  w.set("nested", array(ValueType::ARRAY, {array(ValueType::UINT8, {num(ValueType::UINT8, 1)}),
                                           array(ValueType::STRING, {})}));
  return w;
}

Writer tiny_model(uint32_t alignment) {
  Writer w;
  if (alignment != 32) w.set_alignment(alignment);
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.embedding_length", 32);
  w.set_u32("llama.block_count", 1);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  add_tensor(w, "token_embd.weight", DType::F32, {8, 4});
  add_tensor(w, "blk.0.attn_q.weight", DType::F16, {8, 2});
  add_tensor(w, "blk.0.ffn_up.weight", DType::Q8_0, {32, 2});
  add_tensor(w, "blk.0.ffn_down.weight", DType::Q4_K, {256});
  add_tensor(w, "output_norm.weight", DType::F32, {3, 1, 1, 1});
  return w;
}

Writer tiny_vocab() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int k = 0; k < 40; ++k) {
    tokens.push_back(k < 3 ? std::vector<std::string>{"<unk>", "<s>", "</s>"}[k]
                           : std::string(1, char('a' + k % 26)) + std::to_string(k));
    scores.push_back(-float(k));
    types.push_back(k < 3 ? 3 : 1);
  }
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", {"a b", "ab c", "\xc4\xa0 t"});
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    Writer empty;
    empty.write(dir + "/empty.gguf");
    all_value_types().write(dir + "/values.gguf");
    tiny_model(32).write(dir + "/model-a32.gguf");
    tiny_model(8).write(dir + "/model-a8.gguf");
    tiny_model(64).write(dir + "/model-a64.gguf");
    tiny_vocab().write(dir + "/vocab.gguf");
  } catch (const tf::Error& e) {
    std::fprintf(stderr, "gguf_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
