#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <utility>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf::tok {

namespace {

// Markers for the two patterns that get hand-written scanners (see the header).
constexpr const char* kGpt2Marker = "<gpt2>";
constexpr const char* kLlama3Marker = "<llama3>";

// The patterns of each set, from the models' tokenizer.json (as llama.cpp adapts them:
// "(?i:...)" contractions spelled out, since its fallback engine lacks inline flags).
std::vector<std::string> patterns_of(PreSet set) {
  switch (set) {
    case PreSet::kDefault:
      return {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Marker, R"(\p{N}+)", "[0-9][0-9][0-9]"};
    case PreSet::kLlama3:
      return {kLlama3Marker};
    case PreSet::kDeepseekLlm:
      return {
          "[\r\n]",
          R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF})"
          R"(\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D})"
          R"(\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481})"
          R"(\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD})"
          R"(\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77})"
          R"(\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45})"
          R"(\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D})"
          R"(\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
          R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4})"
          R"(\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D})"
          R"(\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139})"
          R"(\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B})"
          R"(\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
          R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E})"
          R"(\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A})"
          R"(\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB})"
          R"(\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)",
          R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)",
          R"(\s+$)",
          R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)",
          R"(\p{N}+)",
      };
    case PreSet::kDeepseek3:
      return {
          R"(\p{N}{1,3})",
          R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
          R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
          R"(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      };
    case PreSet::kDeepseekCoder:
      return {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)",
              R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)", R"(\p{N})"};
    case PreSet::kFalcon:
      return {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Marker, "[0-9][0-9][0-9]"};
    case PreSet::kStarcoder:
      return {R"(\p{N})", kGpt2Marker};
    case PreSet::kGpt2:
      return {kGpt2Marker};
    case PreSet::kQwen2:
      return {
          R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+)"
          R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
    case PreSet::kPoro:
      return {R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)"};
    case PreSet::kViking:
      return {R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)",
              R"(\p{N})"};
    case PreSet::kTekken:
      return {R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)"
              R"(|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)"
              R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
    case PreSet::kChameleon:
      return {"<sentinel:[0-9]+>",       "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
              R"(([\t\n]|    |  ))",     R"(\p{N})",
              R"([\p{P}!-/:-@\[-`{-~])", kGpt2Marker};
  }
  return {kGpt2Marker};
}

// Bytes standing for non-ASCII codepoints in the collapsed text.
constexpr uint8_t kCollapsedOther = 0xD0;
constexpr uint8_t kCollapsedWhitespace = 0x0B;  // \v: matched by \s

struct CategoryClass {
  char letter;        // the X of \p{X}
  uint16_t flag;      // unicode::Flag
  uint8_t byte;       // its byte in the collapsed text
  const char* ascii;  // the ASCII codepoints llama.cpp includes in the class
};

// The ASCII members are llama.cpp's, not Unicode's: its \p{S} omits '~' (Unicode Sm), so
// a collapsed \p{S} does not match '~'. Kept that way to give the same splits.
constexpr CategoryClass kClasses[] = {
    {'N', unicode::kNumber, 0xD1, "0-9"},
    {'L', unicode::kLetter, 0xD2, "A-Za-z"},
    {'P', unicode::kPunctuation, 0xD3,
     R"(\x21-\x23\x25-\x2A\x2C-\x2F\x3A\x3B\x3F\x40\x5B-\x5D\x5F\x7B\x7D)"},
    {'M', unicode::kMark, 0xD4, ""},
    {'S', unicode::kSymbol, 0xD5, R"(\x24\x2B\x3C-\x3E\x5E\x60\x7C)"},
};

const CategoryClass* class_at(const std::string& p, size_t i) {
  if (p[i] != '\\' || i + 4 >= p.size() || p[i + 1] != 'p' || p[i + 2] != '{' || p[i + 4] != '}')
    return nullptr;
  for (const auto& c : kClasses)
    if (c.letter == p[i + 3]) return &c;
  return nullptr;
}

bool uses_categories(const std::string& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (class_at(p, i)) return true;
  return false;
}

// Rewrites each \p{X} into a byte class over the collapsed text. Bracket tracking is the
// simple one llama.cpp uses: a '[' or ']' preceded by a backslash does not count.
std::string collapse_pattern(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '[' && (i == 0 || p[i - 1] != '\\')) {
      in_class = true;
    } else if (in_class && c == ']' && p[i - 1] != '\\') {
      in_class = false;
    } else if (const CategoryClass* cls = class_at(p, i)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", cls->byte);
      if (!in_class) out += '[';
      out += hex;
      out += cls->ascii;
      if (!in_class) out += ']';
      i += 4;
      continue;
    }
    out += c;
  }
  return out;
}

uint8_t collapse(uint32_t cp) {
  if (cp < 0x80) return static_cast<uint8_t>(cp);
  const uint16_t f = unicode::flags(cp);
  if (f & unicode::kWhitespace) return kCollapsedWhitespace;
  for (const auto& c : kClasses)
    if (f & c.flag) return c.byte;
  return kCollapsedOther;
}

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// Splits one chunk [0, n) of `subject` by a regex the way std::regex_iterator-based code
// does: each match is a piece and so is each non-empty gap. Calls piece(begin, end) in
// subject units (bytes).
template <typename F>
void regex_pieces(const pcre2_code* code, pcre2_match_data* md, const char* subject, size_t n,
                  bool utf, F&& piece) {
  size_t pos = 0, last = 0;
  while (pos <= n) {
    int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject), n, pos,
                         utf ? PCRE2_NO_UTF_CHECK : 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject), n, pos,
                       (utf ? PCRE2_NO_UTF_CHECK : 0) | PCRE2_NO_JIT, md, nullptr);
    }
    if (rc < 0) break;  // no match, or a resource limit: the rest stays one piece
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t ms = ov[0], me = ov[1];
    if (me == ms) {
      // None of the built-in patterns can match empty; step over it to stay finite.
      pos = ms + 1;
      if (utf)
        while (pos < n && (static_cast<uint8_t>(subject[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (ms > last) piece(last, ms);
    piece(ms, me);
    last = pos = me;
  }
  if (last < n) piece(last, n);
}

// GPT-2 pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
// (with \s+ as the catch-all), scanned by hand over cpts[begin, end).
void split_gpt2(const std::vector<uint32_t>& cpts, size_t begin, size_t end,
                std::vector<size_t>& out) {
  using namespace unicode;
  auto cp = [&](size_t i) -> uint32_t { return i < end ? cpts[i] : 0xFFFFFFFF; };
  // 0 outside the chunk, so "no flags" also means "past the end".
  auto fl = [&](size_t i) -> uint16_t { return i < end ? flags(cpts[i]) : 0; };
  auto other = [](uint16_t f) { return f != 0 && !(f & (kWhitespace | kLetter | kNumber)); };
  size_t pos = begin, prev = begin;
  auto emit = [&](size_t e) {
    if (e > prev) out.push_back(e - prev);
    prev = e;
  };
  while (pos < end) {
    const uint32_t c = cpts[pos];
    if (c == '\'' && pos + 1 < end) {
      const uint32_t c1 = cpts[pos + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        emit(pos);
        continue;
      }
      if (pos + 2 < end) {
        const uint32_t c2 = cpts[pos + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          emit(pos);
          continue;
        }
      }
    }
    // an optional leading space joins a run of letters, digits or other symbols
    const size_t body = pos + (c == ' ' ? 1 : 0);
    const uint16_t f = fl(body);
    if (f & kLetter) {
      pos = body;
      while (fl(pos) & kLetter) ++pos;
      emit(pos);
      continue;
    }
    if (f & kNumber) {
      pos = body;
      while (fl(pos) & kNumber) ++pos;
      emit(pos);
      continue;
    }
    if (other(f)) {
      pos = body;
      while (other(fl(pos))) ++pos;
      emit(pos);
      continue;
    }
    size_t nws = 0;
    while (fl(pos + nws) & kWhitespace) ++nws;
    if (nws > 1 && cp(pos + nws) != 0xFFFFFFFF) {
      // \s+(?!\S): leave the last whitespace to prefix the next word
      pos += nws - 1;
      emit(pos);
      continue;
    }
    pos += nws > 0 ? nws : 1;
    emit(pos);
  }
}

// Llama-3 pattern (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+, scanned by hand over cpts[begin, end).
void split_llama3(const std::vector<uint32_t>& cpts, size_t begin, size_t end,
                  std::vector<size_t>& out) {
  using namespace unicode;
  auto cp = [&](size_t i) -> uint32_t { return i < end ? cpts[i] : 0xFFFFFFFF; };
  auto fl = [&](size_t i) -> uint16_t { return i < end ? flags(cpts[i]) : 0; };
  auto other = [](uint16_t f) { return f != 0 && !(f & (kWhitespace | kLetter | kNumber)); };
  auto crlf = [](uint32_t c) { return c == '\r' || c == '\n'; };
  size_t pos = begin, prev = begin;
  auto emit = [&](size_t e) {
    if (e > prev) out.push_back(e - prev);
    prev = e;
  };
  while (pos < end) {
    const uint32_t c = cpts[pos];
    const uint16_t f = fl(pos);
    if (c == '\'' && pos + 1 < end) {
      const uint32_t c1 = to_lower(cpts[pos + 1]);
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pos += 2;
        emit(pos);
        continue;
      }
      if (pos + 2 < end) {
        const uint32_t c2 = to_lower(cpts[pos + 2]);
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pos += 3;
          emit(pos);
          continue;
        }
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!crlf(c) && !(f & kNumber) && ((f & kLetter) || (fl(pos + 1) & kLetter))) {
      ++pos;
      while (fl(pos) & kLetter) ++pos;
      emit(pos);
      continue;
    }
    // \p{N}{1,3}
    if (f & kNumber) {
      size_t run = 0;
      while (fl(pos) & kNumber) {
        ++pos;
        if (++run == 3) {
          emit(pos);
          run = 0;
        }
      }
      emit(pos);
      continue;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*". The test on the first codepoint only asks that it exists,
    // so a space just before the chunk end is split off here on its own.
    const size_t body = pos + (c == ' ' ? 1 : 0);
    if (!(fl(body) & (kWhitespace | kLetter | kNumber)) && f != 0) {
      pos = body;
      while (other(fl(pos))) ++pos;
      while (crlf(cp(pos))) ++pos;
      emit(pos);
      continue;
    }
    // whitespace: \s*[\r\n]+ takes up to the last line break of the run
    size_t nws = 0, after_crlf = 0;
    while (fl(pos + nws) & kWhitespace) {
      if (crlf(cp(pos + nws))) after_crlf = pos + nws + 1;
      ++nws;
    }
    if (after_crlf > 0) {
      pos = after_crlf;
    } else if (nws > 1 && cp(pos + nws) != 0xFFFFFFFF) {
      pos += nws - 1;  // \s+(?!\S)
    } else {
      pos += nws > 0 ? nws : 1;
    }
    emit(pos);
  }
}

}  // namespace

std::optional<PreTypeInfo> lookup_pre_type(std::string_view name) {
  struct Entry {
    const char* name;
    PreSet set;
    bool ignore_merges, add_bos, clean_spaces, no_bos;
  };
  // Names and flags as llama.cpp's vocabulary loader assigns them.
  static constexpr Entry kEntries[] = {
      {"default", PreSet::kDefault, false, false, true, false},
      {"llama3", PreSet::kLlama3, true, true, true, false},
      {"llama-v3", PreSet::kLlama3, true, true, true, false},
      {"llama-bpe", PreSet::kLlama3, true, true, true, false},
      {"falcon3", PreSet::kLlama3, true, true, true, false},
      {"deepseek-llm", PreSet::kDeepseekLlm, false, false, false, false},
      {"deepseek-coder", PreSet::kDeepseekCoder, false, false, false, false},
      {"deepseek-v3", PreSet::kDeepseek3, false, false, false, false},
      {"falcon", PreSet::kFalcon, false, false, true, false},
      {"mpt", PreSet::kGpt2, false, false, true, false},
      {"starcoder", PreSet::kStarcoder, false, false, true, false},
      {"gpt-2", PreSet::kGpt2, false, false, true, false},
      {"phi-2", PreSet::kGpt2, false, false, true, false},
      {"jina-es", PreSet::kGpt2, false, false, true, false},
      {"jina-de", PreSet::kGpt2, false, false, true, false},
      {"gigachat", PreSet::kGpt2, false, false, true, false},
      {"jina-v1-en", PreSet::kGpt2, false, false, true, false},
      {"jina-v2-es", PreSet::kGpt2, false, false, true, false},
      {"jina-v2-de", PreSet::kGpt2, false, false, true, false},
      {"jina-v2-code", PreSet::kGpt2, false, false, true, false},
      {"roberta-bpe", PreSet::kGpt2, false, false, true, false},
      {"refact", PreSet::kStarcoder, false, false, true, false},
      {"command-r", PreSet::kStarcoder, false, false, false, false},
      {"qwen2", PreSet::kQwen2, false, false, false, false},
      {"deepseek-r1-qwen", PreSet::kQwen2, false, false, false, false},
      {"stablelm2", PreSet::kQwen2, false, false, true, false},
      {"olmo", PreSet::kGpt2, false, false, true, false},
      {"dbrx", PreSet::kLlama3, false, false, true, false},
      {"smaug-bpe", PreSet::kLlama3, false, false, true, false},
      {"poro-chat", PreSet::kPoro, false, false, false, false},
      {"chatglm-bpe", PreSet::kLlama3, false, false, true, true},
      {"viking", PreSet::kViking, false, false, false, false},
      {"jais", PreSet::kGpt2, false, false, true, false},
      {"tekken", PreSet::kTekken, true, true, false, false},
      {"smollm", PreSet::kStarcoder, false, false, false, false},
      {"codeshell", PreSet::kStarcoder, false, false, true, false},
      {"bloom", PreSet::kPoro, false, false, true, false},
      {"gpt3-finnish", PreSet::kPoro, false, false, true, false},
      {"exaone", PreSet::kStarcoder, false, false, true, false},
      {"chameleon", PreSet::kChameleon, false, true, false, false},
      {"minerva-7b", PreSet::kStarcoder, false, false, true, false},
      {"megrez", PreSet::kQwen2, false, false, true, false},
  };
  if (name.empty()) name = "default";
  for (const auto& e : kEntries) {
    if (name == e.name) {
      return PreTypeInfo{e.set, e.ignore_merges, e.add_bos, e.clean_spaces, e.no_bos};
    }
  }
  return std::nullopt;
}

struct PreTokenizer::Step {
  enum Kind { kGpt2, kLlama3, kCollapsed, kCodepoints } kind;
  std::shared_ptr<pcre2_code> code;
};

PreTokenizer::PreTokenizer(PreSet set) {
  for (const std::string& p : patterns_of(set)) {
    if (p == kGpt2Marker) {
      steps_.push_back({Step::kGpt2, nullptr});
      continue;
    }
    if (p == kLlama3Marker) {
      steps_.push_back({Step::kLlama3, nullptr});
      continue;
    }
    const bool collapsed = uses_categories(p);
    const std::string pattern = collapsed ? collapse_pattern(p) : p;
    uint32_t options = PCRE2_DOLLAR_ENDONLY;
    if (!collapsed) options |= PCRE2_UTF;
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &err, &err_off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error("pre-tokenizer regex failed to compile at offset " + std::to_string(err_off) +
                  ": " + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
    steps_.push_back({collapsed ? Step::kCollapsed : Step::kCodepoints,
                      std::shared_ptr<pcre2_code>(code, CodeDeleter())});
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<size_t> PreTokenizer::split_lengths(const std::vector<uint32_t>& cpts) const {
  std::vector<size_t> lengths{cpts.size()};
  if (cpts.empty()) return {};

  // Subjects for the regex steps, built on first use.
  std::string collapsed;
  std::string utf8;                // codepoints with non-ASCII whitespace as \v
  std::vector<size_t> cp_to_byte;  // size cpts+1
  std::vector<size_t> byte_to_cp;  // size utf8+1 (valid at codepoint starts)

  std::vector<size_t> next;
  for (const Step& step : steps_) {
    next.clear();
    next.reserve(lengths.size() * 2);
    if (step.kind == Step::kGpt2 || step.kind == Step::kLlama3) {
      size_t start = 0;
      for (size_t len : lengths) {
        if (step.kind == Step::kGpt2)
          split_gpt2(cpts, start, start + len, next);
        else
          split_llama3(cpts, start, start + len, next);
        start += len;
      }
      lengths.swap(next);
      continue;
    }

    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(step.code.get(), nullptr));
    if (!md) throw Error("out of memory for regex match data");

    if (step.kind == Step::kCollapsed) {
      if (collapsed.empty()) {
        collapsed.resize(cpts.size());
        for (size_t i = 0; i < cpts.size(); ++i)
          collapsed[i] = static_cast<char>(collapse(cpts[i]));
      }
      size_t start = 0;
      for (size_t len : lengths) {
        regex_pieces(step.code.get(), md.get(), collapsed.data() + start, len, false,
                     [&](size_t b, size_t e) { next.push_back(e - b); });
        start += len;
      }
    } else {
      if (utf8.empty()) {
        cp_to_byte.resize(cpts.size() + 1);
        for (size_t i = 0; i < cpts.size(); ++i) {
          cp_to_byte[i] = utf8.size();
          uint32_t c = cpts[i];
          if (c >= 0x80 && unicode::is_whitespace(c)) c = kCollapsedWhitespace;
          if (c >= 0xD800 && c <= 0xDFFF) c = unicode::kReplacementChar;  // keep it valid UTF-8
          unicode::append_utf8(utf8, c);
        }
        cp_to_byte[cpts.size()] = utf8.size();
        byte_to_cp.assign(utf8.size() + 1, 0);
        for (size_t i = 0; i <= cpts.size(); ++i) byte_to_cp[cp_to_byte[i]] = i;
      }
      size_t start = 0;
      for (size_t len : lengths) {
        const size_t b0 = cp_to_byte[start], b1 = cp_to_byte[start + len];
        regex_pieces(
            step.code.get(), md.get(), utf8.data() + b0, b1 - b0, true,
            [&](size_t b, size_t e) { next.push_back(byte_to_cp[b0 + e] - byte_to_cp[b0 + b]); });
        start += len;
      }
    }
    lengths.swap(next);
  }
  return lengths;
}

std::vector<std::string> PreTokenizer::split_utf8(std::string_view text) const {
  const std::vector<uint32_t> cpts = unicode::decode_utf8(text);
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t len : split_lengths(cpts)) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) unicode::append_utf8(w, cpts[i]);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  const std::vector<uint32_t> cpts = unicode::decode_utf8(text);
  std::vector<std::string> words;
  std::string utf8;
  size_t start = 0;
  for (size_t len : split_lengths(cpts)) {
    utf8.clear();
    for (size_t i = start; i < start + len; ++i) unicode::append_utf8(utf8, cpts[i]);
    std::string w;
    w.reserve(utf8.size() * 2);
    for (unsigned char b : utf8) w += unicode::byte_to_unicode(b);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

}  // namespace tf::tok
