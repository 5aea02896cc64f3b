// Writes a few small, valid safetensors files and index files into a directory, as the
// safetensors fuzzer's seed corpus (generated, so no binary blobs are checked in).
// Usage: safetensors_fuzz_seeds <dir>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct T {
  std::string name, dtype, shape;  // shape as JSON, e.g. "[2,3]"
  size_t bytes;
};

void write(const std::string& path, const std::string& data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

std::string file(const std::vector<T>& ts, const std::string& meta) {
  std::string h = "{";
  if (!meta.empty()) h += "\"__metadata__\":" + meta;
  size_t off = 0;
  for (const T& t : ts) {
    if (h.size() > 1) h += ",";
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + t.shape +
         ",\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + t.bytes) + "]}";
    off += t.bytes;
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  for (size_t i = 0; i < off; ++i) out += char(i * 37 + 11);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string d = argv[1];
  write(d + "/one.safetensors", file({{"w", "F32", "[2,3]", 24}}, ""));
  write(d + "/types.safetensors", file({{"a", "F16", "[4]", 8},
                                        {"b", "BF16", "[2,2]", 8},
                                        {"c", "I64", "[1]", 8},
                                        {"e", "F32", "[0,7]", 0},
                                        {"u", "U8", "[3]", 3}},
                                       "{\"format\":\"pt\"}"));
  write(d + "/tied.safetensors",
        file({{"lm_head.weight", "F32", "[4,2]", 32}, {"model.norm.weight", "F32", "[2]", 8}},
             "{\"format\":\"pt\",\"model.embed_tokens.weight\":\"lm_head.weight\"}"));
  write(d + "/empty.safetensors", file({}, ""));
  write(d + "/index.json",
        "{\"metadata\":{\"total_size\":64},\"weight_map\":{\"a\":\"model-00001-of-00002."
        "safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}");
  return 0;
}
