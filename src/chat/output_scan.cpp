#include "chat/output_scan.h"

#include <algorithm>

namespace tf::chat::detail {

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// ---- JsonScan ----------------------------------------------------------------------------

bool JsonScan::value_start(unsigned char c) {
  switch (c) {
    case '{':
    case '[':
      if (int(stack_.size()) >= kMaxDepth) return false;
      stack_.push_back(char(c));
      state_ = c == '{' ? kKeyOrClose : kValueOrClose;
      return true;
    case '"':
      in_key_ = false;
      state_ = kString;
      return true;
    case '-':
      state_ = kNumMinus;
      return true;
    case '0':
      state_ = kNumZero;
      return true;
    case 't':
      literal_ = "rue";
      state_ = kLiteral;
      return true;
    case 'f':
      literal_ = "alse";
      state_ = kLiteral;
      return true;
    case 'n':
      literal_ = "ull";
      state_ = kLiteral;
      return true;
    default:
      if (c >= '1' && c <= '9') {
        state_ = kNumInt;
        return true;
      }
      return false;
  }
}

void JsonScan::value_done() {
  state_ = stack_.empty() ? kFinished : kAfter;
}

// One byte inside a string (after the opening quote).
bool JsonScan::string_byte(unsigned char c) {
  if (c == '\\') {
    state_ = kEscape;
    return true;
  }
  if (want_low_) return false;  // a high surrogate escape must be followed by a low one
  if (c == '"') {
    if (in_key_) {
      state_ = kColon;
    } else {
      value_done();
    }
    return true;
  }
  if (c < 0x20) return false;
  if (c < 0x80) return true;
  // A UTF-8 lead byte: how many continuation bytes, and the range allowed for the first one
  // (which excludes overlong forms, surrogates and code points above U+10FFFF).
  utf8_lo_ = 0x80;
  utf8_hi_ = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    utf8_left_ = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    utf8_left_ = 2;
    if (c == 0xE0) utf8_lo_ = 0xA0;
    if (c == 0xED) utf8_hi_ = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    utf8_left_ = 3;
    if (c == 0xF0) utf8_lo_ = 0x90;
    if (c == 0xF4) utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  state_ = kUtf8;
  return true;
}

JsonScan::Status JsonScan::run(std::string_view t, bool final) {
  while (pos_ < t.size()) {
    if (state_ == kFinished) return kDone;
    if (state_ == kFailed) return kFail;
    const unsigned char c = static_cast<unsigned char>(t[pos_]);
    switch (state_) {
      case kValue:
        if (!is_ws(char(c)) && !value_start(c)) return fail();
        break;
      case kValueOrClose:
        if (c == ']') {
          stack_.pop_back();
          value_done();
        } else if (!is_ws(char(c)) && !value_start(c)) {
          return fail();
        }
        break;
      case kKeyOrClose:
      case kKey:
        if (c == '"') {
          in_key_ = true;
          state_ = kString;
        } else if (c == '}' && state_ == kKeyOrClose) {
          stack_.pop_back();
          value_done();
        } else if (!is_ws(char(c))) {
          return fail();
        }
        break;
      case kColon:
        if (c == ':') {
          state_ = kValue;
        } else if (!is_ws(char(c))) {
          return fail();
        }
        break;
      case kAfter:
        if (c == ',') {
          state_ = stack_.back() == '{' ? kKey : kValue;
        } else if ((c == '}' && stack_.back() == '{') || (c == ']' && stack_.back() == '[')) {
          stack_.pop_back();
          value_done();
        } else if (!is_ws(char(c))) {
          return fail();
        }
        break;
      case kString:
        if (!string_byte(c)) return fail();
        break;
      case kUtf8:
        if (c < utf8_lo_ || c > utf8_hi_) return fail();
        utf8_lo_ = 0x80;
        utf8_hi_ = 0xBF;
        if (--utf8_left_ == 0) state_ = kString;
        break;
      case kEscape:
        if (c == 'u') {
          state_ = kHex;
          hex_left_ = 4;
          hex_val_ = 0;
        } else if (!want_low_ &&
                   std::string_view("\"\\/bfnrt").find(char(c)) != std::string_view::npos) {
          state_ = kString;
        } else {
          return fail();
        }
        break;
      case kHex: {
        unsigned d;
        if (c >= '0' && c <= '9') {
          d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
          d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
          d = c - 'A' + 10;
        } else {
          return fail();
        }
        hex_val_ = hex_val_ * 16 + d;
        if (--hex_left_ > 0) break;
        const bool high = hex_val_ >= 0xD800 && hex_val_ <= 0xDBFF;
        const bool low = hex_val_ >= 0xDC00 && hex_val_ <= 0xDFFF;
        if (want_low_ != low) return fail();  // a lone half of a surrogate pair
        want_low_ = high;
        state_ = kString;
        break;
      }
      case kNumMinus:
        if (c == '0') {
          state_ = kNumZero;
        } else if (c >= '1' && c <= '9') {
          state_ = kNumInt;
        } else {
          return fail();
        }
        break;
      case kNumDot:
      case kNumESign:
        if (c < '0' || c > '9') return fail();
        state_ = state_ == kNumDot ? kNumFrac : kNumExp;
        break;
      case kNumE:
        if (c == '+' || c == '-') {
          state_ = kNumESign;
        } else if (c >= '0' && c <= '9') {
          state_ = kNumExp;
        } else {
          return fail();
        }
        break;
      case kNumZero:
      case kNumInt:
      case kNumFrac:
      case kNumExp:
        if (c >= '0' && c <= '9' && state_ != kNumZero) break;
        if (c == '.' && (state_ == kNumZero || state_ == kNumInt)) {
          state_ = kNumDot;
          break;
        }
        if ((c == 'e' || c == 'E') && state_ != kNumExp) {
          state_ = kNumE;
          break;
        }
        value_done();  // the number ended before c, which the next state reads
        continue;
      case kLiteral:
        if (char(c) != *literal_) return fail();
        if (*++literal_ == '\0') value_done();
        break;
      case kFinished:
      case kFailed:
        break;
    }
    ++pos_;
  }
  if (state_ == kFinished) return kDone;
  if (state_ == kFailed) return kFail;
  if (!final) return kMore;
  // The end of the output: only a number can end there (it has no closing character).
  const bool number_end =
      state_ == kNumZero || state_ == kNumInt || state_ == kNumFrac || state_ == kNumExp;
  if (number_end && stack_.empty()) {
    state_ = kFinished;
    return kDone;
  }
  return fail();
}

// ---- Cursor ------------------------------------------------------------------------------

constexpr size_t kShortSearch = 4096;

bool Cursor::fail_here(size_t at, std::string why) {
  state_ = kFail;
  fail_at_ = at;
  why_ = std::move(why);
  return false;
}

bool Cursor::fail(std::string why) {
  if (state_ != kOk) return false;
  return fail_here(pos_, std::move(why));
}

void Cursor::ws() {
  if (state_ != kOk) return;
  while (pos_ < text_.size() && is_ws(text_[pos_])) ++pos_;
}

int Cursor::opt(std::string_view s) {
  if (state_ != kOk) return -1;
  const size_t have = std::min(s.size(), text_.size() - pos_);
  if (text_.compare(pos_, have, s.substr(0, have)) != 0) return 0;
  if (have < s.size()) {
    if (final_) return 0;
    need_more();
    return -1;
  }
  pos_ += s.size();
  return 1;
}

bool Cursor::lit(std::string_view s) {
  const int r = opt(s);
  if (r == 1) return true;
  if (r == 0) fail_here(pos_, "expected " + std::string(s));
  return false;
}

bool Cursor::closer(std::string_view s) {
  const int r = opt(s);
  if (r == 1) return true;
  if (r < 0) return false;
  if (pos_ == text_.size() && final_) return true;
  return fail_here(pos_, "expected " + std::string(s));
}

bool Cursor::next_is(char ch) {
  if (state_ != kOk) return false;
  if (pos_ < text_.size()) return text_[pos_] == ch;
  if (!final_) need_more();
  return false;
}

bool Cursor::json(std::string_view* raw) {
  if (state_ != kOk) return false;
  if (auto it = memo_->done.find(pos_); it != memo_->done.end()) {
    *raw = text_.substr(pos_, it->second - pos_);
    pos_ = it->second;
    return true;
  }
  if (memo_->scan_start != pos_) {
    memo_->scan = JsonScan();
    memo_->scan_start = pos_;
  }
  const JsonScan::Status st = memo_->scan.run(text_.substr(pos_), final_);
  if (st == JsonScan::kMore) return need_more();
  const size_t end = pos_ + memo_->scan.end();
  memo_->scan_start = std::string::npos;
  if (st == JsonScan::kFail) return fail_here(end, "malformed JSON");
  memo_->done[pos_] = end;
  *raw = text_.substr(pos_, end - pos_);
  pos_ = end;
  return true;
}

bool Cursor::ident(std::string_view* out, size_t max) {
  if (state_ != kOk) return false;
  size_t e = pos_;
  auto name_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  };
  while (e < text_.size() && e - pos_ <= max && name_char(text_[e])) ++e;
  if (e - pos_ > max) return fail_here(pos_, "name too long");
  if (e == text_.size() && !final_) return need_more();
  if (e == pos_) return fail_here(pos_, "expected a name");
  *out = text_.substr(pos_, e - pos_);
  pos_ = e;
  return true;
}

bool Cursor::until(std::string_view stop, size_t max, std::string_view* before) {
  if (state_ != kOk) return false;
  size_t& from = memo_->searched.try_emplace(pos_, pos_).first->second;
  const size_t f = text_.find(stop, from);
  if (f == std::string_view::npos || f - pos_ > max) {
    // A short search (a name, a header) fails where it began, and what follows is looked at
    // again; a long one (a value) that ran to the end leaves it all to the content, so that
    // text with many such openings is not searched to its end once per opening.
    if (final_ || text_.size() - pos_ > max + stop.size())
      return fail_here(max <= kShortSearch ? pos_ : text_.size(), "no " + std::string(stop));
    // Next time look only where stop could still begin.
    from = std::max(pos_, text_.size() >= stop.size() ? text_.size() - stop.size() + 1 : 0);
    return need_more();
  }
  from = f;  // a rerun over this text finds it at once
  *before = text_.substr(pos_, f - pos_);
  pos_ = f + stop.size();
  return true;
}

bool Cursor::until_or_end(std::string_view stop, std::string_view* before) {
  if (state_ != kOk) return false;
  size_t& from = memo_->searched.try_emplace(pos_, pos_).first->second;
  size_t f = text_.find(stop, from);
  if (f == std::string_view::npos) {
    if (!final_) {
      from = std::max(pos_, text_.size() >= stop.size() ? text_.size() - stop.size() + 1 : 0);
      return need_more();
    }
    f = text_.size();
  } else {
    from = f;
  }
  *before = text_.substr(pos_, f - pos_);
  pos_ = f;
  return true;
}

bool Cursor::calls_from_json(std::string_view raw, bool array, const Keys& name_keys,
                             const Keys& args_keys, std::string_view id_key,
                             std::vector<RawCall>* out, bool args_required) {
  if (state_ != kOk) return false;
  Json j;
  if (!parse_json(raw, &j)) return fail("malformed JSON");
  return calls_from_value(j, array, name_keys, args_keys, id_key, out, args_required);
}

bool Cursor::calls_from_value(const Json& j, bool array, const Keys& name_keys,
                              const Keys& args_keys, std::string_view id_key,
                              std::vector<RawCall>* out, bool args_required) {
  if (state_ != kOk) return false;
  std::vector<const Json*> items;
  if (array) {
    if (!j.is_array() || j.empty()) return fail("expected a list of calls");
    for (const Json& e : j) items.push_back(&e);
  } else {
    items.push_back(&j);
  }
  auto member = [](const Json& o, const Keys& keys) -> const Json* {
    for (std::string_view k : keys)
      if (auto it = o.find(std::string(k)); it != o.end()) return &*it;
    return nullptr;
  };
  std::vector<RawCall> calls;
  for (const Json* item : items) {
    if (!item->is_object()) return fail("a call is not a JSON object");
    const Json* name = member(*item, name_keys);
    if (!name || !name->is_string() || name->get_ref<const std::string&>().empty())
      return fail("a call without a name");
    const Json* args = member(*item, args_keys);
    if (!args && args_required) return fail("a call without arguments");
    RawCall call;
    call.name = name->get<std::string>();
    std::string why;
    if (!arguments_text(args, &call.arguments, &why)) return fail(why);
    if (!id_key.empty()) {
      const Json* id = member(*item, {id_key});
      if (id && id->is_string() && usable_id(id->get_ref<const std::string&>()))
        call.id = id->get<std::string>();
    }
    calls.push_back(std::move(call));
  }
  for (RawCall& c : calls) out->push_back(std::move(c));
  return true;
}

bool Cursor::arguments(std::string_view raw, std::string* out) {
  if (state_ != kOk) return false;
  Json j;
  if (!parse_json(raw, &j)) return fail("malformed JSON");
  std::string why;
  if (!arguments_text(&j, out, &why)) return fail(why);
  return true;
}

bool Cursor::rest(std::string_view* out) {
  if (state_ != kOk) return false;
  if (!final_) return need_more();
  *out = text_.substr(pos_);
  pos_ = text_.size();
  return true;
}

// ---- helpers -------------------------------------------------------------------------------

bool parse_json(std::string_view raw, Json* out) {
  // Scan first: nlohmann's parser recurses, so nesting must be bounded before it runs.
  JsonScan scan;
  if (scan.run(raw, true) != JsonScan::kDone) return false;
  if (!trim_ws(raw.substr(scan.end())).empty()) return false;
  try {
    *out = Json::parse(raw.begin(), raw.end());
    return true;
  } catch (const std::exception&) {  // e.g. a number out of range
    return false;
  }
}

std::string dump_json(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool arguments_text(const Json* value, std::string* out, std::string* why) {
  if (!value || value->is_null()) {
    *out = "{}";
    return true;
  }
  if (value->is_object()) {
    *out = dump_json(*value);
    return true;
  }
  if (value->is_string()) {  // some models (and templates) give the arguments as JSON text
    Json inner;
    if (parse_json(value->get_ref<const std::string&>(), &inner) && inner.is_object()) {
      *out = dump_json(inner);
      return true;
    }
  }
  *why = "the arguments are not a JSON object";
  return false;
}

bool usable_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tf::chat::detail
