// Vocabulary validation and indexing, with llama.cpp's defaults and per-model fixes.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf::tok {

namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

TokenAttr attr_from_type(int32_t t) {
  return (t >= 0 && t <= 6) ? static_cast<TokenAttr>(t) : TokenAttr::UNDEFINED;
}

bool is_special_attr(TokenAttr a) {
  return a == TokenAttr::CONTROL || a == TokenAttr::USER_DEFINED || a == TokenAttr::UNKNOWN;
}

// "<0xAB>" -> 0xAB, or -1.
int parse_byte_token(const std::string& text) {
  if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = text[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos);
  s.swap(out);
}

// The bytes a token stands for, control tokens included (llama.cpp's token-to-piece cache).
std::string compute_piece(const Vocab& v, const TokenInfo& t) {
  switch (t.attr) {
    case TokenAttr::CONTROL:
    case TokenAttr::UNKNOWN:
    case TokenAttr::USER_DEFINED:
      return t.text;
    case TokenAttr::NORMAL:
      break;
    case TokenAttr::BYTE:
      if (v.type != VocabType::kBpe) {
        const int b = parse_byte_token(t.text);
        return b >= 0 ? std::string(1, static_cast<char>(b)) : std::string();
      }
      return {};
    default:  // UNDEFINED, UNUSED: rendered as nothing, like llama.cpp
      return {};
  }
  if (v.type != VocabType::kBpe) {
    std::string s = t.text;
    replace_all(s, kSpace, " ");
    return s;
  }
  // Byte-level BPE: each codepoint of the text is one byte of the piece.
  std::string out;
  for (uint32_t cp : unicode::decode_utf8(t.text)) {
    const int b = unicode::unicode_to_byte(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      // Not in the byte alphabet: llama.cpp renders such codepoints as a marker.
      out += "[UNK_BYTE_0x";
      for (unsigned char c : unicode::to_utf8(cp)) {
        char hex[3];
        std::snprintf(hex, sizeof hex, "%02x", c);
        out += hex;
      }
      out += t.text + "]";
    }
  }
  return out;
}

}  // namespace

void Vocab::build(VocabData&& d) {
  model_name = d.model;
  if (d.model == "llama") {
    type = VocabType::kSpm;
  } else if (d.model == "gpt2") {
    type = VocabType::kBpe;
  } else if (d.model == "bert") {
    type = VocabType::kWpm;
  } else if (d.model.empty()) {
    throw Error("tokenizer: missing tokenizer.ggml.model");
  } else {
    throw Error("tokenizer: unsupported tokenizer model '" + d.model + "'");
  }

  const size_t n = d.tokens.size();
  if (n == 0) throw Error("tokenizer: empty vocabulary (tokenizer.ggml.tokens)");
  if (n > 0x7FFFFFFF) throw Error("tokenizer: vocabulary too large");
  if (!d.scores.empty() && d.scores.size() != n) {
    throw Error("tokenizer: tokenizer.ggml.scores has " + std::to_string(d.scores.size()) +
                " entries for " + std::to_string(n) + " tokens");
  }
  if (!d.types.empty() && d.types.size() != n) {
    throw Error("tokenizer: tokenizer.ggml.token_type has " + std::to_string(d.types.size()) +
                " entries for " + std::to_string(n) + " tokens");
  }

  // Defaults by vocabulary type, then by pre-tokenizer (llama.cpp's loader).
  pre_name = d.pre.empty() ? "default" : d.pre;
  TokenId def_bos = -1, def_eos = -1, def_unk = -1, def_sep = -1, def_pad = -1, def_mask = -1;
  switch (type) {
    case VocabType::kSpm:
      def_bos = 1, def_eos = 2, def_unk = 0;
      add_space_prefix = true, add_bos = true, clean_spaces = false;
      break;
    case VocabType::kWpm:
      def_bos = 101, def_unk = 100, def_sep = 102, def_pad = 0, def_mask = 103;
      add_bos = true, clean_spaces = true;
      break;
    case VocabType::kBpe: {
      auto info = lookup_pre_type(d.pre);
      if (!info) throw Error("tokenizer: unknown pre-tokenizer type '" + d.pre + "'");
      pre = *info;
      def_bos = pre.no_bos ? -1 : 11, def_eos = 11;
      ignore_merges = pre.ignore_merges;
      add_bos = pre.add_bos;
      clean_spaces = pre.clean_spaces;
      pretokenizer = std::make_unique<PreTokenizer>(pre.set);
      break;
    }
  }
  if (d.add_space_prefix) add_space_prefix = *d.add_space_prefix;

  tokens.resize(n);
  for (size_t i = 0; i < n; ++i) {
    TokenInfo& t = tokens[i];
    t.text = std::move(d.tokens[i]);
    // Empty strings cannot be looked up or matched; llama.cpp renames them the same way.
    if (t.text.empty()) t.text = "[EMPTY_" + std::to_string(i) + "]";
    t.score = d.scores.empty() ? 0.0f : d.scores[i];
    t.attr = d.types.empty() ? TokenAttr::NORMAL : attr_from_type(d.types[i]);
    max_token_len = std::max(max_token_len, t.text.size());
  }
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = tokens[i].text;
    const size_t h = hash_text(text);
    const int64_t prev = ids.find(h, [&](uint32_t id) { return tokens[id].text == text; });
    if (prev >= 0) {
      // llama.cpp refuses such a vocabulary too (its id <-> text maps would disagree).
      throw Error("tokenizer: duplicate token text at ids " + std::to_string(prev) + " and " +
                  std::to_string(i));
    }
    ids.insert(h, static_cast<uint32_t>(i));
  }

  if (type == VocabType::kBpe) {
    if (d.merges.empty()) throw Error("tokenizer: gpt2 vocabulary without tokenizer.ggml.merges");
    if (d.merges.size() > 0x7FFFFFFF) throw Error("tokenizer: too many merges");
    merge_text = std::move(d.merges);
    merges.reserve(merge_text.size());
    merge_parts.reserve(merge_text.size());
    merge_rank_of.reserve(merge_text.size());
    for (size_t i = 0; i < merge_text.size(); ++i) {
      const std::string_view line = merge_text[i];
      // Split at the first space after the first character; a line without one can never
      // match two non-empty symbols, so it is skipped (llama.cpp stores it as ("", "")).
      const size_t sp = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
      if (sp == std::string_view::npos) continue;
      const std::string_view l = line.substr(0, sp), r = line.substr(sp + 1);
      const size_t h = hash_pair(l, r);
      const auto same = [&](uint32_t e) {
        return merge_parts[e].first == l && merge_parts[e].second == r;
      };
      if (merges.find(h, same) >= 0) continue;  // the first occurrence keeps its rank
      merges.insert(h, static_cast<uint32_t>(merge_parts.size()));
      merge_parts.emplace_back(l, r);
      merge_rank_of.push_back(static_cast<int>(i));
    }
  }

  // Special ids: stored value if inside the vocabulary, else the type's default.
  auto pick = [&](const std::optional<int64_t>& stored, TokenId def) -> TokenId {
    if (stored && *stored >= 0 && *stored < static_cast<int64_t>(n))
      return static_cast<TokenId>(*stored);
    return valid(def) ? def : -1;
  };
  bos = pick(d.bos_id, def_bos);
  eos = pick(d.eos_id, def_eos);
  eot = pick(d.eot_id, -1);
  eom = pick(d.eom_id, -1);
  unk = pick(d.unk_id, def_unk);
  sep = pick(d.sep_id, def_sep);
  pad = pick(d.pad_id, def_pad);
  mask = pick(d.mask_id, def_mask);
  fim_pre = pick(d.fim_pre_id, -1);
  fim_suf = pick(d.fim_suf_id, -1);
  fim_mid = pick(d.fim_mid_id, -1);
  fim_pad = pick(d.fim_pad_id, -1);
  fim_rep = pick(d.fim_rep_id, -1);
  fim_sep = pick(d.fim_sep_id, -1);
  if (d.add_bos) add_bos = *d.add_bos;
  if (d.add_eos) add_eos = *d.add_eos;

  // Well-known end / fill-in-the-middle tokens found by their text when no key names them;
  // such a token is forced to CONTROL. (llama.cpp scans a hash map, so with several
  // candidates its pick is arbitrary; here the lowest id wins.)
  auto detect = [&](TokenId& slot, std::initializer_list<std::string_view> texts) {
    if (slot >= 0) return;
    for (size_t i = 0; i < n && slot < 0; ++i) {
      for (std::string_view t : texts) {
        if (tokens[i].text == t) {
          slot = static_cast<TokenId>(i);
          tokens[i].attr = TokenAttr::CONTROL;
          break;
        }
      }
    }
  };
  detect(eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
               "<\xEF\xBD\x9C"
               "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"});
  detect(eom, {"<|eom_id|>"});
  detect(fim_pre, {"<|fim_prefix|>", "<fim-prefix>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81"
                   "begin\xEF\xBD\x9C>",
                   "<PRE>"});
  detect(fim_suf, {"<|fim_suffix|>", "<fim-suffix>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
                   "<SUF>"});
  detect(fim_mid, {"<|fim_middle|>", "<fim-middle>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81"
                   "end\xEF\xBD\x9C>",
                   "<MID>"});
  detect(fim_pad, {"<|fim_pad|>", "<fim-pad>", "<PAD>"});
  detect(fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"});
  detect(fim_sep, {"<|file_sep|>"});

  // End-of-generation set.
  for (TokenId id : {fim_pad, fim_rep, fim_sep, eos, eot, eom})
    if (id >= 0) eog.push_back(id);
  static const std::string_view kEogTexts[] = {"<|eot_id|>",    "<|im_end|>",    "<|end|>",
                                               "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                                               "<EOT>"};
  for (std::string_view t : kEogTexts) {
    const TokenId id = find(t);
    if (id >= 0) {
      eog.push_back(id);
      tokens[id].attr = TokenAttr::CONTROL;
    }
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

  // Tokens that split_special looks for, longest text first.
  for (size_t i = 0; i < n; ++i)
    if (is_special_attr(tokens[i].attr)) special_tokens.push_back(static_cast<TokenId>(i));
  std::stable_sort(special_tokens.begin(), special_tokens.end(), [&](TokenId a, TokenId b) {
    return tokens[a].text.size() > tokens[b].text.size();
  });

  // SPM byte fallback: "<0xAB>", else a token that is the byte itself.
  byte_tokens.fill(-1);
  if (type == VocabType::kSpm) {
    static const char* kHex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
      TokenId id = find(name);
      if (id < 0) id = find(std::string(1, static_cast<char>(b)));
      byte_tokens[b] = id;
    }
  }

  pieces.resize(n);
  for (size_t i = 0; i < n; ++i) pieces[i] = compute_piece(*this, tokens[i]);

  // Per-model whitespace stripping around special tokens (llama.cpp sets these by name
  // because GGUF does not carry the flags).
  auto set_strip = [&](std::string_view text, bool lstrip, bool rstrip, bool value) {
    const TokenId id = find(text);
    if (id < 0) return;
    if (lstrip) tokens[id].lstrip = value;
    if (rstrip) tokens[id].rstrip = value;
  };
  std::string lname = d.name;
  for (char& c : lname) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto contains = [](const std::string& s, std::initializer_list<std::string_view> subs) {
    for (std::string_view sub : subs)
      if (s.find(sub) != std::string::npos) return true;
    return false;
  };
  if (contains(d.pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"})) {
    set_strip("<mask>", true, false, true);
  } else if (contains(lname, {"phi-3", "phi3"})) {
    for (TokenId id : special_tokens) tokens[id].rstrip = true;
    set_strip("</s>", false, true, true);
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) set_strip(t, false, true, false);
  }
}

}  // namespace tf::tok
