// libFuzzer target for the model-output parser (chat/tool_calls.h): the first byte picks the
// tool-call format, the think markers and the parse flags; the rest is the output, parsed whole
// and streamed in pieces of varying size (split anywhere). Neither may throw, and the streamed
// deltas must add up to the whole parse.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/tool_calls.h"

using namespace tf::chat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  OutputFormat f;
  f.tools = ToolFormat((sel & 31) % (int(ToolFormat::kGptOss) + 1));
  if (sel & 32) {
    f.think_open = f.tools == ToolFormat::kGptOss ? "<|channel|>analysis<|message|>" : "<think>";
    f.think_close = f.tools == ToolFormat::kGptOss ? "<|end|>" : "</think>";
    f.starts_in_reasoning = sel & 64;
  }
  ParseOptions opt;
  opt.parse_tools = !(sel & 128) || (sel & 1);
  opt.parse_reasoning = !(sel & 128) || (sel & 2);
  opt.log_warnings = false;
  opt.id_seed = 1;
  try {
    const ParsedOutput whole = parse_output(f, text, opt);
    StreamingOutputParser p(f, opt);
    ParsedOutput got;
    auto add = [&](const OutputDelta& d) {
      got.content += d.content;
      got.reasoning += d.reasoning;
      for (const ToolCallDelta& t : d.tool_calls) {
        if (t.index == int(got.tool_calls.size())) {
          got.tool_calls.push_back({t.id, t.name, t.arguments});
        } else if (t.index >= 0 && t.index < int(got.tool_calls.size())) {
          got.tool_calls[size_t(t.index)].arguments += t.arguments;
        } else {
          std::fprintf(stderr, "delta index %d out of order\n", t.index);
          std::abort();
        }
      }
    };
    size_t i = 0, step = 1;
    while (i < text.size()) {
      add(p.push(text.substr(i, step)));
      i += step;
      step = step % 7 + 1;
    }
    add(p.finish());
    if (got.content != whole.content || got.reasoning != whole.reasoning ||
        got.tool_calls != whole.tool_calls) {
      std::fprintf(stderr, "streamed output differs from the whole parse\n");
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
