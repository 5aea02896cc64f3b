// Internal to the output parser (tool_calls.h): the pieces the tool-call formats are read with.
//
// A tool call is read by a region parser (tool_formats.cpp) through a Cursor over the output
// received so far. Each read either succeeds, or fails (this is not a well-formed call), or
// needs more text: the text so far is a prefix of a call and more output decides. A region parser
// is a pure function of the text, so the streaming parser re-runs it from the call's start as
// more output arrives; the JSON scanner's state is kept between runs (ScanMemo) so that a long
// call is scanned once, not once per piece.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/jinja.h"

namespace tf::chat::detail {

using Json = jinja::Json;  // nlohmann::ordered_json: arguments keep the model's key order

inline bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
std::string_view trim_ws(std::string_view s);

// Validates one JSON value (RFC 8259, UTF-8 checked inside strings), fed a growing text.
// Nesting is limited (kMaxDepth) so that the nlohmann parse that follows cannot recurse deeply.
class JsonScan {
 public:
  enum Status { kMore, kDone, kFail };
  static constexpr int kMaxDepth = 128;
  // `text` starts at the value and extends the text of the previous call.
  Status run(std::string_view text, bool final);
  size_t end() const { return pos_; }  // kDone: just past the value; kFail: the offending byte

 private:
  enum State : unsigned char {
    kValue,
    kValueOrClose,
    kKeyOrClose,
    kKey,
    kColon,
    kAfter,
    kString,
    kEscape,
    kHex,
    kUtf8,
    kNumMinus,
    kNumZero,
    kNumInt,
    kNumDot,
    kNumFrac,
    kNumE,
    kNumESign,
    kNumExp,
    kLiteral,
    kFinished,
    kFailed,
  };
  bool value_start(unsigned char c);  // false: not a value
  void value_done();
  bool string_byte(unsigned char c);
  Status fail() {
    state_ = kFailed;
    return kFail;
  }

  size_t pos_ = 0;
  State state_ = kValue;
  std::vector<char> stack_;  // '{' or '['
  bool in_key_ = false;
  int hex_left_ = 0;
  unsigned hex_val_ = 0;
  bool want_low_ = false;  // a \uD800-\uDBFF escape waits for its low half
  int utf8_left_ = 0;
  unsigned char utf8_lo_ = 0x80, utf8_hi_ = 0xBF;  // range of the next continuation byte
  const char* literal_ = nullptr;                  // rest of true / false / null
};

// What a region parser keeps between runs over the same call: the JSON value being scanned at
// the end of the text, values already complete, and how far a search for a marker has looked.
struct ScanMemo {
  size_t scan_start = std::string::npos;
  JsonScan scan;
  std::unordered_map<size_t, size_t> done;      // value start -> end
  std::unordered_map<size_t, size_t> searched;  // search start -> where to resume looking
  void clear() { *this = ScanMemo(); }
};

using Keys = std::vector<std::string_view>;  // JSON member names, first present wins

struct RawCall {
  std::string id;  // "" unless the model gave a usable one
  std::string name, arguments;
};

// Reads a region of the output. Every read returns false once the region is decided against
// (fail) or more text is needed (more); state() then says which. Reads after that do nothing.
class Cursor {
 public:
  enum State { kOk, kMore, kFail };
  Cursor(std::string_view text, size_t pos, bool final, bool parse_reasoning, ScanMemo* memo)
      : text_(text), pos_(pos), final_(final), parse_reasoning_(parse_reasoning), memo_(memo) {}

  State state() const { return state_; }
  size_t pos() const { return pos_; }
  size_t fail_at() const { return fail_at_; }
  const std::string& why() const { return why_; }
  bool committed() const { return committed_; }
  bool parse_reasoning() const { return parse_reasoning_; }
  // From here on this is surely meant as a tool call: a failure is worth a warning.
  void commit() { committed_ = true; }

  void ws();
  // The exact text s (the failure is where s would begin).
  bool lit(std::string_view s);
  // 1: consumed s; 0: s is not next (nothing consumed); -1: more text needed.
  int opt(std::string_view s);
  // Like opt(s), but the end of the output also closes the call (models stop right after a
  // complete call and leave out the close marker): true for both.
  bool closer(std::string_view s);
  // Whether the next byte is ch: false at the end of the output; at the end of the text so
  // far, more text is needed (state kMore).
  bool next_is(char ch);
  // One complete JSON value, its text in *raw.
  bool json(std::string_view* raw);
  // 1 to max bytes of [A-Za-z0-9_.-] (a function name), ended by any other byte.
  bool ident(std::string_view* out, size_t max = 256);
  // Text up to `stop` (consumed), at most max bytes before it.
  bool until(std::string_view stop, size_t max, std::string_view* before);
  // Text up to `stop` (not consumed) or the end of the output.
  bool until_or_end(std::string_view stop, std::string_view* before);
  // The rest of the output (more text needed until it has ended).
  bool rest(std::string_view* out);
  // Back to an earlier position, after a look-ahead.
  void seek(size_t pos) {
    if (state_ == kOk) pos_ = pos;
  }
  // Back to an earlier position to try another reading, forgetting a failure since (false,
  // and nothing changes, when more text is needed).
  bool retry(size_t pos) {
    if (state_ == kMore) return false;
    state_ = kOk;
    pos_ = pos;
    return true;
  }
  bool fail(std::string why);

  // The calls in the JSON text `raw` (read by json()): an object, or an array of objects when
  // `array`. name_keys / args_keys: the member names, first present wins; the arguments may
  // be an object, a string holding one, or absent / null (no arguments). id_key: a member with
  // the model's id ("" for none). A malformed call fails the region here.
  // args_required: a call must have an arguments member (a bare JSON answer is a call only if
  // it looks exactly like one).
  bool calls_from_json(std::string_view raw, bool array, const Keys& name_keys,
                       const Keys& args_keys, std::string_view id_key, std::vector<RawCall>* out,
                       bool args_required = false);
  bool calls_from_value(const Json& v, bool array, const Keys& name_keys, const Keys& args_keys,
                        std::string_view id_key, std::vector<RawCall>* out,
                        bool args_required = false);
  // The arguments object in JSON text `raw` (see arguments_text()), compact.
  bool arguments(std::string_view raw, std::string* out);

 private:
  bool need_more() {
    state_ = kMore;
    return false;
  }
  bool fail_here(size_t at, std::string why);

  std::string_view text_;
  size_t pos_;
  bool final_, parse_reasoning_;
  ScanMemo* memo_;
  State state_ = kOk;
  size_t fail_at_ = 0;
  std::string why_;
  bool committed_ = false;
};

// JSON text -> value (false on a parse error or excessive nesting; never throws).
bool parse_json(std::string_view raw, Json* out);
// Compact text of a JSON value; invalid UTF-8 in strings becomes U+FFFD.
std::string dump_json(const Json& j);
// The arguments of a call from its arguments member: compact object text, or false.
bool arguments_text(const Json* value, std::string* out, std::string* why);
// A model-given id worth keeping: 1 to 64 bytes of [A-Za-z0-9_-.:].
bool usable_id(std::string_view id);

}  // namespace tf::chat::detail
