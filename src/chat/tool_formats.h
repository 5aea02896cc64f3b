// Internal to the output parser: what each tool-call format looks like to it. A format is a set
// of markers in the content, each with a region parser that reads what follows (output_scan.h),
// plus markers that are simply removed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "chat/output_scan.h"
#include "chat/tool_calls.h"

namespace tf::chat::detail {

// What a region yielded when it parsed (Cursor::state() kOk).
struct Region {
  std::vector<RawCall> calls;  // none: a header that only switches to the answer (">>>all\n")
  std::string reasoning;       // harmony: an analysis message after the first one
};
using RegionFn = void (*)(Cursor& c, Region& out);

struct Trigger {
  std::string_view text;
  RegionFn fn = nullptr;
  // Only where a call may begin without a marker of its own: before any content (a JSON
  // answer such as Llama 3's {"name": ...}); the region then starts at the trigger itself.
  bool bare = false;
};

struct FormatSpec {
  std::vector<Trigger> triggers;         // parse_tools: a call (or a header) begins here
  std::vector<std::string_view> drops;   // parse_tools: wrappers around calls, removed
  std::vector<std::string_view> answer;  // parse_reasoning: wrappers around the answer, removed
  RegionFn start = nullptr;  // the output begins inside a region (the prompt ended with ">>>")
  int id_len = 0;            // ids: 0 = "call_" + 24 letters/digits; else that many (Mistral: 9)
};

const FormatSpec& format_spec(ToolFormat f);

}  // namespace tf::chat::detail
