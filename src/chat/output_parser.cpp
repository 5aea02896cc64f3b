// The output parser: one state machine for whole and streamed outputs (parse_output is a stream
// of one piece), so the two cannot disagree.
//
// The text received so far is kept; everything before pos_ is decided and released. At pos_ the
// parser is in the content or in the think block. In the content it looks for the format's
// markers; a trigger marker hands the text after it to the format's region parser
// (tool_formats.cpp), which says: a call (released whole), not a call (the text is content), or
// undecided (wait for more text and run it again from the marker). Every decision depends on
// the text only, never on where it was split, which is what makes streaming equal the whole.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "chat/tool_calls.h"
#include "chat/tool_formats.h"

namespace tf::chat {

using detail::Cursor;
using detail::FormatSpec;
using detail::is_ws;
using detail::Region;
using detail::RegionFn;
using detail::Trigger;

namespace {

// The longest proper prefix of `marker` that `text` ends with (held back: the marker may be
// completed by the next piece).
size_t held_prefix(std::string_view text, std::string_view marker) {
  for (size_t k = std::min(marker.size() - 1, text.size()); k > 0; --k)
    if (text.substr(text.size() - k) == marker.substr(0, k)) return k;
  return 0;
}

class IdGen {
 public:
  explicit IdGen(uint64_t seed) : rng_(seed ? seed : fresh_seed()) {}
  std::string make(int id_len) {
    static constexpr char kAlnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const int n = id_len > 0 ? id_len : 24;
    std::string s = id_len > 0 ? "" : "call_";
    for (int i = 0; i < n; ++i) s += kAlnum[rng_() % 62];
    return s;
  }

 private:
  static uint64_t fresh_seed() {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd();
  }
  std::mt19937_64 rng_;
};

bool alnum_id(std::string_view id, size_t len) {
  if (id.size() != len) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

}  // namespace

class StreamingOutputParser::Impl {
 public:
  Impl(const OutputFormat& f, const ParseOptions& o);
  OutputDelta push(std::string_view piece);
  OutputDelta finish();
  const ParsedOutput& result() const { return result_; }

 private:
  enum class Mode { kContent, kReasoning, kPassthrough };
  enum class Step { kWait, kDone, kSwitched };  // need text / used it all / changed mode
  enum Kind { kThinkOpen, kDrop, kTrigger };
  struct Marker {
    std::string_view text;
    Kind kind;
    const Trigger* trigger = nullptr;
  };

  void run(bool final);
  Step content_step(bool final);
  Step reasoning_step(bool final);
  Step region(RegionFn fn, size_t at, size_t start, bool final);
  bool active(const Marker& m) const;

  void literal(std::string_view s);      // content as it stands (whitespace rules apply)
  void raw_content(std::string_view s);  // content verbatim (an unparsed think block)
  void reasoning_text(std::string_view s);
  void emit_call(detail::RawCall&& c);
  void warn(const std::string& what);

  OutputFormat fmt_;
  ParseOptions opt_;
  const FormatSpec& spec_;
  std::vector<Marker> markers_;
  bool first_byte_[256] = {};

  std::string text_;
  size_t pos_ = 0;
  Mode mode_ = Mode::kContent;
  bool finished_ = false;
  bool start_region_ = false;  // the output begins inside spec_.start's region
  bool skip_open_ = false;     // starts_in_reasoning: a repeated open marker is dropped
  bool reasoning_seen_ = false;
  bool content_started_ = false;           // some content was released (whitespace now counts)
  bool bare_calls_ok_ = true;              // no answer text yet: a bare JSON call may still come
  std::string content_ws_, reasoning_ws_;  // whitespace held back (may be trailing)
  bool reasoning_started_ = false;
  detail::ScanMemo memo_;
  IdGen ids_;
  ParsedOutput result_;
  OutputDelta delta_;
};

StreamingOutputParser::Impl::Impl(const OutputFormat& f, const ParseOptions& o)
    : fmt_(f), opt_(o), spec_(detail::format_spec(f.tools)), ids_(o.id_seed) {
  const bool thinks = !fmt_.think_open.empty() && !fmt_.think_close.empty();
  if (!thinks) fmt_.starts_in_reasoning = false;
  const bool reasoning = opt_.parse_reasoning && (thinks || !spec_.answer.empty());
  if (!opt_.parse_tools && !reasoning) {  // nothing to parse: the text is the content
    mode_ = Mode::kPassthrough;
    return;
  }
  if (thinks) markers_.push_back({fmt_.think_open, kThinkOpen});
  if (opt_.parse_tools) {
    for (const Trigger& t : spec_.triggers) markers_.push_back({t.text, kTrigger, &t});
    for (std::string_view d : spec_.drops) markers_.push_back({d, kDrop});
    start_region_ = spec_.start != nullptr && !fmt_.starts_in_reasoning;
  }
  if (opt_.parse_reasoning)
    for (std::string_view d : spec_.answer) markers_.push_back({d, kDrop});
  for (const Marker& m : markers_) first_byte_[static_cast<unsigned char>(m.text[0])] = true;
  if (fmt_.starts_in_reasoning) {
    mode_ = Mode::kReasoning;
    reasoning_seen_ = true;
    skip_open_ = opt_.parse_reasoning;
  }
}

OutputDelta StreamingOutputParser::Impl::push(std::string_view piece) {
  if (finished_) return {};
  text_.append(piece);
  run(false);
  return std::exchange(delta_, {});
}

OutputDelta StreamingOutputParser::Impl::finish() {
  if (finished_) return {};
  run(true);
  finished_ = true;
  return std::exchange(delta_, {});
}

void StreamingOutputParser::Impl::run(bool final) {
  try {
    for (;;) {
      Step s = Step::kDone;
      if (mode_ == Mode::kPassthrough) {
        raw_content(std::string_view(text_).substr(pos_));
        pos_ = text_.size();
      } else {
        s = mode_ == Mode::kReasoning ? reasoning_step(final) : content_step(final);
      }
      if (s != Step::kSwitched) break;
    }
  } catch (const std::exception& e) {  // not expected (allocation): keep the text, stop parsing
    warn(std::string("output parser failed (") + e.what() + "); the rest is content");
    mode_ = Mode::kPassthrough;
    std::string rest = content_started_ ? content_ws_ : "";
    rest.append(text_, pos_);
    content_ws_.clear();
    raw_content(rest);
    pos_ = text_.size();
  }
}

bool StreamingOutputParser::Impl::active(const Marker& m) const {
  switch (m.kind) {
    case kThinkOpen:  // a think block opens the output, or is not one
      return !reasoning_seen_ && !content_started_ && result_.tool_calls.empty();
    case kTrigger:
      return !m.trigger->bare || bare_calls_ok_;
    case kDrop:
      return true;
  }
  return false;
}

StreamingOutputParser::Impl::Step StreamingOutputParser::Impl::content_step(bool final) {
  const std::string_view t = text_;
  if (start_region_) {
    const Step s = region(spec_.start, 0, 0, final);
    if (s == Step::kWait) return s;
    start_region_ = false;
  }
  while (pos_ < t.size()) {
    const unsigned char c = static_cast<unsigned char>(t[pos_]);
    if (is_ws(char(c))) {
      content_ws_ += char(c);
      ++pos_;
      continue;
    }
    if (first_byte_[c]) {
      // The longest marker that matches here, unless a longer one may still match.
      const Marker* best = nullptr;
      bool longer_possible = false;
      const std::string_view rest = t.substr(pos_);
      for (const Marker& m : markers_) {
        if (!active(m)) continue;
        if (rest.size() >= m.text.size()) {
          if (rest.substr(0, m.text.size()) == m.text &&
              (!best || m.text.size() > best->text.size()))
            best = &m;
        } else if (!final && m.text.substr(0, rest.size()) == rest) {
          longer_possible = true;
        }
      }
      // A marker that may still match is longer than the rest of the text, so longer than
      // any that matches: wait for it.
      if (longer_possible) return Step::kWait;
      if (best) {
        switch (best->kind) {
          case kThinkOpen:
            reasoning_seen_ = true;
            mode_ = Mode::kReasoning;
            pos_ += best->text.size();
            if (opt_.parse_reasoning) {
              content_ws_.clear();
            } else {
              raw_content(best->text);
            }
            return Step::kSwitched;
          case kDrop:
            pos_ += best->text.size();
            continue;
          case kTrigger: {
            const size_t start = best->trigger->bare ? pos_ : pos_ + best->text.size();
            if (region(best->trigger->fn, pos_, start, final) == Step::kWait) return Step::kWait;
            if (mode_ != Mode::kContent) return Step::kSwitched;
            continue;
          }
        }
      }
    }
    size_t e = pos_ + 1;
    while (e < t.size() && !is_ws(t[e]) && !first_byte_[static_cast<unsigned char>(t[e])]) ++e;
    literal(t.substr(pos_, e - pos_));
    pos_ = e;
  }
  if (final) content_ws_.clear();  // trailing whitespace
  return Step::kDone;
}

// Runs a region parser on the text from `start` (the trigger is at `at`).
StreamingOutputParser::Impl::Step StreamingOutputParser::Impl::region(RegionFn fn, size_t at,
                                                                      size_t start, bool final) {
  Cursor c(text_, start, final, opt_.parse_reasoning, &memo_);
  Region r;
  fn(c, r);
  if (c.state() == Cursor::kMore && !final) return Step::kWait;
  memo_.clear();
  if (c.state() == Cursor::kOk && c.pos() > at) {
    if (!r.calls.empty()) content_ws_.clear();
    for (detail::RawCall& call : r.calls) emit_call(std::move(call));
    if (!r.reasoning.empty()) {  // a later reasoning message: a paragraph of its own
      reasoning_ws_ = reasoning_started_ ? "\n\n" : "";
      reasoning_text(r.reasoning);
      reasoning_ws_.clear();
    }
    pos_ = c.pos();
    return Step::kDone;
  }
  // Not a call: its text is content, up to where it went wrong (the rest is looked at again).
  const size_t q = std::min(text_.size(), std::max(c.fail_at(), at + 1));
  if (c.committed())
    warn(std::string("malformed ") + tool_format_name(fmt_.tools) + " tool call at byte " +
         std::to_string(at) + " (" + (c.why().empty() ? "unfinished" : c.why()) +
         "): kept as content");
  literal(std::string_view(text_).substr(at, q - at));
  pos_ = q;
  return Step::kDone;
}

StreamingOutputParser::Impl::Step StreamingOutputParser::Impl::reasoning_step(bool final) {
  const std::string_view t = text_;
  const std::string_view close = fmt_.think_close;
  if (skip_open_) {  // a think block the prompt opened, and the model opened again
    size_t q = pos_;
    while (q < t.size() && is_ws(t[q])) ++q;
    pos_ = q;  // leading whitespace of the reasoning is dropped anyway
    const std::string_view rest = t.substr(q);
    const std::string_view open = fmt_.think_open;
    if (rest.size() < open.size() && open.substr(0, rest.size()) == rest && !final)
      return Step::kWait;
    if (rest.substr(0, open.size()) == open) pos_ += open.size();
    skip_open_ = false;
  }
  const size_t f = t.find(close, pos_);
  if (f != std::string_view::npos) {
    if (opt_.parse_reasoning) {
      reasoning_text(t.substr(pos_, f - pos_));
      reasoning_ws_.clear();
    } else {
      raw_content(t.substr(pos_, f + close.size() - pos_));
    }
    pos_ = f + close.size();
    mode_ = Mode::kContent;
    return Step::kSwitched;
  }
  const size_t hold = final ? 0 : held_prefix(t.substr(pos_), close);
  const std::string_view text = t.substr(pos_, t.size() - hold - pos_);
  if (opt_.parse_reasoning) {
    reasoning_text(text);
    if (final) reasoning_ws_.clear();
  } else {
    raw_content(text);
  }
  pos_ = t.size() - hold;
  return Step::kDone;
}

void StreamingOutputParser::Impl::literal(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t e = i;
    if (is_ws(s[i])) {
      while (e < s.size() && is_ws(s[e])) ++e;
      content_ws_.append(s.substr(i, e - i));
    } else {
      while (e < s.size() && !is_ws(s[e])) ++e;
      if (content_started_) {
        result_.content += content_ws_;
        delta_.content += content_ws_;
      }
      content_ws_.clear();
      result_.content.append(s.substr(i, e - i));
      delta_.content.append(s.substr(i, e - i));
      content_started_ = true;
      bare_calls_ok_ = false;
    }
    i = e;
  }
}

void StreamingOutputParser::Impl::raw_content(std::string_view s) {
  if (s.empty()) return;
  if (content_started_) {
    result_.content += content_ws_;
    delta_.content += content_ws_;
  }
  content_ws_.clear();
  result_.content.append(s);
  delta_.content.append(s);
  content_started_ = true;
}

void StreamingOutputParser::Impl::reasoning_text(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t e = i;
    if (is_ws(s[i])) {
      while (e < s.size() && is_ws(s[e])) ++e;
      reasoning_ws_.append(s.substr(i, e - i));
    } else {
      while (e < s.size() && !is_ws(s[e])) ++e;
      if (reasoning_started_) {
        result_.reasoning += reasoning_ws_;
        delta_.reasoning += reasoning_ws_;
      }
      reasoning_ws_.clear();
      result_.reasoning.append(s.substr(i, e - i));
      delta_.reasoning.append(s.substr(i, e - i));
      reasoning_started_ = true;
    }
    i = e;
  }
}

void StreamingOutputParser::Impl::emit_call(detail::RawCall&& c) {
  const bool keep_id = spec_.id_len > 0 ? alnum_id(c.id, size_t(spec_.id_len)) : !c.id.empty();
  ToolCall call{keep_id ? std::move(c.id) : ids_.make(spec_.id_len), std::move(c.name),
                std::move(c.arguments)};
  delta_.tool_calls.push_back({int(result_.tool_calls.size()), call.id, call.name, call.arguments});
  result_.tool_calls.push_back(std::move(call));
}

void StreamingOutputParser::Impl::warn(const std::string& what) {
  if (opt_.log_warnings) std::fprintf(stderr, "tokenfab: warning: %s\n", what.c_str());
  result_.warnings.push_back(what);
}

// ---- public --------------------------------------------------------------------------------

StreamingOutputParser::StreamingOutputParser(const OutputFormat& f, const ParseOptions& opt)
    : impl_(std::make_unique<Impl>(f, opt)) {}
StreamingOutputParser::StreamingOutputParser(const OutputFormat& f, bool parse_tools,
                                             bool parse_reasoning)
    : StreamingOutputParser(f, ParseOptions{parse_tools, parse_reasoning}) {}
StreamingOutputParser::~StreamingOutputParser() = default;
StreamingOutputParser::StreamingOutputParser(StreamingOutputParser&&) noexcept = default;
StreamingOutputParser& StreamingOutputParser::operator=(StreamingOutputParser&&) noexcept = default;

OutputDelta StreamingOutputParser::push(std::string_view piece) {
  return impl_->push(piece);
}
OutputDelta StreamingOutputParser::finish() {
  return impl_->finish();
}
const ParsedOutput& StreamingOutputParser::result() const {
  return impl_->result();
}

ParsedOutput parse_output(const OutputFormat& f, std::string_view text, const ParseOptions& opt) {
  StreamingOutputParser p(f, opt);
  p.push(text);
  p.finish();
  return p.result();
}

ParsedOutput parse_output(const OutputFormat& f, std::string_view text, bool parse_tools,
                          bool parse_reasoning) {
  return parse_output(f, text, ParseOptions{parse_tools, parse_reasoning});
}

}  // namespace tf::chat
