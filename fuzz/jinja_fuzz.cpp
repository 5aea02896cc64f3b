// libFuzzer target for the chat-template interpreter: any bytes as a template must either
// fail to parse or render with tf::Error, within the limits (no crash, no hang, no other
// exception). The variables are a small conversation with tools, so that mutations of real
// templates reach deep into the interpreter.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chat/jinja.h"
#include "util/error.h"

namespace {

const tf::jinja::Json& variables() {
  static const tf::jinja::Json v = tf::jinja::Json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather in Paris? 你好 😀"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": [1, 2.5, true, null]}}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
      {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "documents": null
  })");
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string src(reinterpret_cast<const char*>(data), size);
  tf::jinja::Limits limits;
  limits.max_steps = 200'000;
  limits.max_output_bytes = 1 << 20;
  limits.max_depth = 64;
  try {
    tf::jinja::Template t(src);
    const std::string out = t.render(variables(), limits);
    if (int64_t(out.size()) > limits.max_output_bytes) {
      std::fprintf(stderr, "output of %zu bytes passed the limit\n", out.size());
      std::abort();
    }
  } catch (const tf::Error&) {
  }
  return 0;
}
