#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace tf::unicode {

namespace {

constexpr uint32_t kMaxCodepoint = 0x110000;

// One flag word per codepoint (2.2 MB), expanded once from the range table: lookups are on
// the hot path of every pre-tokenizer.
const std::vector<uint16_t>& flag_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(kMaxCodepoint, kUndefined);
    for (size_t i = 0; i < data::kCategoryRangesCount; ++i) {
      uint32_t lo = data::kCategoryRanges[i].first;
      uint32_t hi =
          i + 1 < data::kCategoryRangesCount ? data::kCategoryRanges[i + 1].first : kMaxCodepoint;
      std::fill(t.begin() + lo, t.begin() + hi, data::kCategoryRanges[i].flag);
    }
    for (size_t i = 0; i < data::kWhitespaceCount; ++i) t[data::kWhitespace[i]] |= kWhitespace;
    return t;
  }();
  return table;
}

struct ByteMaps {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 512> from_unicode;  // every mapped codepoint is below 0x144
};

const ByteMaps& byte_maps() {
  static const ByteMaps maps = [] {
    ByteMaps m;
    m.from_unicode.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the rest (controls, space, DEL, NBSP,
    // soft hyphen...) are moved, in byte order, to U+0100 and up so that every byte has a
    // visible, non-space character.
    auto printable = [](int b) {
      return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = printable(b) ? b : next++;
      m.to_unicode[b] = to_utf8(cp);
      m.from_unicode[cp] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return maps;
}

}  // namespace

uint16_t flags(uint32_t cp) {
  return cp < kMaxCodepoint ? flag_table()[cp] : static_cast<uint16_t>(kUndefined);
}

uint32_t to_lower(uint32_t cp) {
  const CodepointPair* begin = data::kLowercase;
  const CodepointPair* end = data::kLowercase + data::kLowercaseCount;
  auto it = std::lower_bound(begin, end, cp,
                             [](const CodepointPair& p, uint32_t v) { return p.from < v; });
  return (it != end && it->from == cp) ? it->to : cp;
}

uint32_t nfd_first(uint32_t cp) {
  const NfdRange* begin = data::kNfdFirst;
  const NfdRange* end = data::kNfdFirst + data::kNfdFirstCount;
  auto it =
      std::upper_bound(begin, end, cp, [](uint32_t v, const NfdRange& r) { return v < r.first; });
  if (it == begin) return cp;
  --it;
  return (cp <= it->last) ? it->nfd : cp;
}

std::vector<uint32_t> decode_utf8(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const size_t n = s.size();
  auto cont = [&](size_t i) { return i < n && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80; };
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  size_t i = 0;
  while (i < n) {
    const uint32_t b0 = byte(i);
    if (b0 < 0x80) {
      out.push_back(b0);
      i += 1;
    } else if (b0 >= 0xC0 && b0 < 0xE0 && cont(i + 1)) {
      out.push_back(((b0 & 0x1F) << 6) | (byte(i + 1) & 0x3F));
      i += 2;
    } else if (b0 >= 0xE0 && b0 < 0xF0 && cont(i + 1) && cont(i + 2)) {
      out.push_back(((b0 & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F));
      i += 3;
    } else if (b0 >= 0xF0 && b0 < 0xF8 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      uint32_t cp = ((b0 & 0x07) << 18) | ((byte(i + 1) & 0x3F) << 12) |
                    ((byte(i + 2) & 0x3F) << 6) | (byte(i + 3) & 0x3F);
      if (cp < kMaxCodepoint) {
        out.push_back(cp);
        i += 4;
      } else {
        // llama.cpp would fail later re-encoding this; treat the lead byte as invalid.
        out.push_back(kReplacementChar);
        i += 1;
      }
    } else {
      out.push_back(kReplacementChar);
      i += 1;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(uint32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

int utf8_check(std::string_view s) {
  if (s.empty()) return 0;
  const uint8_t b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return 1;
  int len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return -1;
  }
  for (int i = 1; i < len; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return 0;
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return -1;
  }
  return len;
}

const std::string& byte_to_unicode(uint8_t b) {
  return byte_maps().to_unicode[b];
}

int unicode_to_byte(uint32_t cp) {
  return cp < byte_maps().from_unicode.size() ? byte_maps().from_unicode[cp] : -1;
}

}  // namespace tf::unicode
