// tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, generation_config.json)
// -> tokenizer.ggml.* keys, so that the GGUF tokenizer (src/tokenizer) runs them unchanged.
//
// Two families, mapped as llama.cpp's converter maps them:
//  * byte-level BPE (Llama 3, Qwen, GPT-2): model "gpt2", the merges as they are, and a "pre"
//    name for the pre-tokenizer. llama.cpp recognises the pre-tokenizer by hashing how the
//    Python tokenizer splits a test text; here the Split regex itself is compared with the
//    ones the GGUF pre-tokenizers implement (an unknown one is an error, not a guess).
//  * Llama-style BPE with byte fallback (TinyStories, Llama-2-like HF tokenizers): model
//    "llama", driven by scores. llama.cpp writes -1000 for every score, which loses the merge
//    order; here a token's score is minus the rank of the first merge that produces it (base
//    characters -1e9, control and user-defined tokens -1000), so the SPM tokenizer's "highest
//    score first" applies the merges in HF's order (shared/models/MANIFEST.md, note 6).
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "format/hf_internal.h"
#include "util/error.h"
#include "util/file.h"

namespace tf::hf {

namespace {

using detail::json;

enum TokenType : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The pre-tokenizer regexes of Hugging Face tokenizer files whose GGUF pre-tokenizer is known.
struct KnownSplit {
  const char* regex;
  const char* pre;
};
constexpr KnownSplit kSplits[] = {
    // Llama 3 (and 3.1 / 3.2): digits in groups of up to three.
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    // Qwen 2 / 2.5 / 3: single digits.
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
};

std::string type_of(const json& j) {
  auto t = j.find("type");
  return t != j.end() && t->is_string() ? t->get<std::string>() : "";
}

// The GGUF "pre" name of a byte-level pre-tokenizer, or throws.
std::string detect_pre(const json& pt, const std::string& what) {
  auto unsupported = [&](const std::string& why) {
    return Error(what + ": unsupported pre-tokenizer (" + why +
                 "); known: Llama 3 and Qwen 2 Split regexes, or GPT-2 ByteLevel");
  };
  if (pt.is_null()) throw unsupported("none, but the vocabulary is byte-level");
  if (type_of(pt) == "ByteLevel") {  // GPT-2: ByteLevel applies its own regex
    if (!detail::get_bool(pt, "use_regex", what, true))
      throw unsupported("ByteLevel without a regex splits nothing");
    if (detail::get_bool(pt, "add_prefix_space", what, false))
      throw unsupported("ByteLevel with add_prefix_space");
    return "gpt-2";
  }
  if (type_of(pt) != "Sequence") throw unsupported("type '" + type_of(pt) + "'");
  auto list = pt.find("pretokenizers");
  if (list == pt.end() || !list->is_array() || list->size() != 2)
    throw unsupported("a Sequence other than [Split, ByteLevel]");
  const json& split = (*list)[0];
  const json& bl = (*list)[1];
  if (type_of(split) != "Split" || type_of(bl) != "ByteLevel")
    throw unsupported("a Sequence other than [Split, ByteLevel]");
  if (detail::get_bool(bl, "use_regex", what, true) ||
      detail::get_bool(bl, "add_prefix_space", what, false))
    throw unsupported("ByteLevel after Split must have use_regex and add_prefix_space false");
  auto behavior = split.find("behavior");
  if (behavior == split.end() || *behavior != "Isolated" ||
      detail::get_bool(split, "invert", what, false))
    throw unsupported("Split must be Isolated, not inverted");
  auto pattern = split.find("pattern");
  const json* re = nullptr;
  if (pattern != split.end() && pattern->is_object() && pattern->contains("Regex"))
    re = &(*pattern)["Regex"];
  if (!re || !re->is_string()) throw unsupported("Split without a Regex pattern");
  for (const KnownSplit& k : kSplits)
    if (re->get<std::string>() == k.regex) return k.pre;
  throw unsupported("Split regex " + re->dump() + " is not one of the known ones");
}

// The content of a special-token entry of tokenizer_config / special_tokens_map: a string or
// {"content": ...}; "" when it is neither.
std::string token_content(const json& e) {
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object()) {
    auto c = e.find("content");
    if (c != e.end() && c->is_string()) return c->get<std::string>();
  }
  return "";
}

struct AddedToken {
  int64_t id;
  std::string content;
  bool special;
};

// What llama.cpp treats as a control token even when the file does not mark it special.
bool looks_special(const std::string& t) {
  auto wrapped = [&](const std::string& a, const std::string& b) {
    return t.size() >= a.size() + b.size() && t.compare(0, a.size(), a) == 0 &&
           t.compare(t.size() - b.size(), b.size(), b) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\uFF5C", "\uFF5C>") || wrapped("<unused", ">");
}

bool is_byte_token(const std::string& t) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// One merge as "left right" (the GGUF form). The pair form (newer files) may hold spaces,
// which GGUF merges cannot: llama.cpp writes them as U+0120, as byte-level text does.
std::pair<std::string, std::string> merge_parts(const json& m, const std::string& what) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == s.size())
      throw Error(what + ": malformed merge \"" + s + "\"");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    auto enc = [](std::string s) {
      std::string r;
      for (char c : s) r += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
      return r;
    };
    return {enc(m[0].get<std::string>()), enc(m[1].get<std::string>())};
  }
  throw Error(what + ": malformed merge " + m.dump().substr(0, 80));
}

void add_chat_templates(const std::string& dir, const std::optional<json>& tc, Metadata& kv) {
  const json* ct = nullptr;
  if (tc && tc->is_object() && tc->contains("chat_template")) ct = &(*tc)["chat_template"];
  if (ct && ct->is_string()) {
    kv.emplace_back("tokenizer.chat_template", detail::str(ct->get<std::string>()));
  } else if (ct && ct->is_array()) {  // [{"name": "default" | "tool_use" | ..., "template"}]
    std::vector<std::string> names;
    for (const json& e : *ct) {
      if (!e.is_object() || !e.contains("name") || !e.contains("template") ||
          !e["name"].is_string() || !e["template"].is_string())
        throw Error(dir +
                    "/tokenizer_config.json: chat_template list entries need name and template");
      std::string name = e["name"].get<std::string>();
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      const std::string key =
          name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name;
      if (name != "default") names.push_back(name);
      kv.emplace_back(key, detail::str(e["template"].get<std::string>()));
    }
    if (!names.empty()) kv.emplace_back("tokenizer.chat_templates", detail::str_array(names));
  } else if (!ct || ct->is_null()) {
    // Newer transformers keep the template in a file of its own.
    const std::string path = dir + "/chat_template.jinja";
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec))
      kv.emplace_back("tokenizer.chat_template", detail::str(read_file(path, "chat template")));
  } else {
    throw Error(dir + "/tokenizer_config.json: chat_template must be a string or a list");
  }
}

}  // namespace

Metadata import_tokenizer(const std::string& dir, const json& config, const std::string& arch) {
  const std::string what = dir + "/tokenizer.json";
  const auto tj = detail::read_json(dir, "tokenizer.json");
  if (!tj) throw Error(dir + ": no tokenizer.json (a Hugging Face fast tokenizer is needed)");
  const auto tc = detail::read_json(dir, "tokenizer_config.json");
  const auto stm = detail::read_json(dir, "special_tokens_map.json");
  const auto gen = detail::read_json(dir, "generation_config.json");
  const json& t = *tj;
  if (!t.is_object() || !t.contains("model") || !t["model"].is_object())
    throw Error(what + ": no \"model\" object");
  const json& model = t["model"];
  if (type_of(model) != "BPE")
    throw Error(what + ": unsupported tokenizer model '" + type_of(model) +
                "' (supported: BPE, byte-level or with byte fallback)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    throw Error(what + ": model.vocab is not an object");
  constexpr int64_t kMaxVocab = int64_t(1) << 24;

  // Ids: the model's vocabulary plus the added tokens (which may extend it).
  std::unordered_map<std::string, int64_t> id_of;
  std::map<int64_t, std::string> text_of;
  auto add = [&](const std::string& s, const json& idj, bool override_text) {
    if (!idj.is_number_integer() || idj.get<int64_t>() < 0 || idj.get<int64_t>() >= kMaxVocab)
      throw Error(what + ": token \"" + s + "\" has an invalid id " + idj.dump());
    const int64_t id = idj.get<int64_t>();
    auto [it, fresh] = text_of.emplace(id, s);
    if (!fresh && it->second != s) {
      if (!override_text)
        throw Error(what + ": tokens \"" + it->second + "\" and \"" + s + "\" share id " +
                    std::to_string(id));
      it->second = s;
    }
    id_of[s] = id;
  };
  for (const auto& [s, id] : model["vocab"].items()) add(s, id, false);
  std::vector<AddedToken> added;
  if (auto at = t.find("added_tokens"); at != t.end() && !at->is_null()) {
    if (!at->is_array()) throw Error(what + ": added_tokens is not a list");
    for (const json& e : *at) {
      if (!e.is_object() || !e.contains("id") || !e.contains("content") ||
          !e["content"].is_string())
        throw Error(what + ": added_tokens entries need id and content");
      add(e["content"].get<std::string>(), e["id"], true);
      added.push_back({e["id"].get<int64_t>(), e["content"].get<std::string>(),
                       detail::get_bool(e, "special", what, false)});
    }
  }
  if (text_of.empty()) throw Error(what + ": the vocabulary is empty");
  const int64_t max_id = text_of.rbegin()->first;
  const std::string cfg_what = dir + "/config.json";
  const int64_t n_vocab =
      (config.is_object() ? detail::get_int(config, "vocab_size", cfg_what, 1, kMaxVocab)
                          : std::nullopt)
          .value_or(max_id + 1);
  if (max_id >= n_vocab)
    throw Error(what + ": token id " + std::to_string(max_id) +
                " is outside config.json's vocab_size " + std::to_string(n_vocab));

  const bool byte_fallback = detail::get_bool(model, "byte_fallback", what, false);
  const json decoder = t.value("decoder", json());
  const bool spm_style = byte_fallback && decoder.is_object() && type_of(decoder) == "Sequence";
  Metadata kv;
  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(size_t(n_vocab), kNormal);
  std::set<int64_t> added_ids;
  for (const AddedToken& a : added) added_ids.insert(a.id);
  for (int64_t i = 0; i < n_vocab; ++i) {
    auto it = text_of.find(i);
    if (it == text_of.end()) {
      tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
      types[size_t(i)] = kUnused;
    } else {
      tokens[size_t(i)] = it->second;
    }
  }
  const json merges = model.value("merges", json::array());
  if (!merges.is_array()) throw Error(what + ": model.merges is not a list");

  if (spm_style) {
    // Special ids as transformers lists them (all_special_ids): the named special tokens of
    // the configs plus the added tokens marked special.
    std::set<int64_t> special;
    for (const AddedToken& a : added)
      if (a.special) special.insert(a.id);
    for (const auto* cfg : {&tc, &stm}) {
      if (!*cfg || !(*cfg)->is_object()) continue;
      for (const auto& [k, v] : (*cfg)->items()) {
        std::vector<std::string> names;
        if (k == "additional_special_tokens" && v.is_array()) {
          for (const json& e : v) names.push_back(token_content(e));
        } else if (k.size() > 6 && k.compare(k.size() - 6, 6, "_token") == 0) {
          names.push_back(token_content(v));
        }
        for (const std::string& n : names)
          if (auto f = id_of.find(n); !n.empty() && f != id_of.end()) special.insert(f->second);
      }
    }
    std::vector<float> scores(size_t(n_vocab), -1e9f);
    for (int64_t i = 0; i < n_vocab; ++i) {
      const std::string& s = tokens[size_t(i)];
      if (types[size_t(i)] == kUnused) {
        scores[size_t(i)] = -1000.0f;
      } else if (is_byte_token(s)) {
        types[size_t(i)] = kByte;
      } else if (special.count(i)) {
        types[size_t(i)] = kControl;
        scores[size_t(i)] = -1000.0f;
      } else if (added_ids.count(i)) {
        types[size_t(i)] = kUserDefined;
        scores[size_t(i)] = -1000.0f;
      }
    }
    // Merge ranks: the first merge producing a token gives its score.
    std::vector<bool> scored(size_t(n_vocab), false);
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto [l, rt] = merge_parts(merges[r], what);
      auto f = id_of.find(l + rt);
      if (f == id_of.end()) continue;
      const size_t id = size_t(f->second);
      if (scored[id] || types[id] != kNormal) continue;
      scored[id] = true;
      scores[id] = -float(r);
    }
    kv.emplace_back("tokenizer.ggml.model", detail::str("llama"));
    kv.emplace_back("tokenizer.ggml.pre", detail::str("default"));
    kv.emplace_back("tokenizer.ggml.tokens", detail::str_array(tokens));
    kv.emplace_back("tokenizer.ggml.scores", detail::f32_array(scores));
    kv.emplace_back("tokenizer.ggml.token_type", detail::i32_array(types));
  } else {
    bool byte_level = type_of(t.value("pre_tokenizer", json())) == "ByteLevel";
    if (auto pt = t.find("pre_tokenizer"); pt != t.end() && type_of(*pt) == "Sequence")
      for (const json& p : pt->value("pretokenizers", json::array()))
        byte_level |= type_of(p) == "ByteLevel";
    if (!byte_level)
      throw Error(what +
                  ": unsupported tokenizer: BPE that is neither byte-level nor "
                  "Llama-style with byte fallback");
    const json norm = t.value("normalizer", json());
    if (!norm.is_null() && type_of(norm) != "NFC")
      throw Error(what + ": unsupported normalizer '" + type_of(norm) +
                  "' for a byte-level vocabulary (supported: none, NFC)");
    const std::string pre = detect_pre(t.value("pre_tokenizer", json()), what);
    for (const AddedToken& a : added) {
      if (a.id >= n_vocab || tokens[size_t(a.id)] != a.content) continue;
      if (a.special || looks_special(a.content)) {
        types[size_t(a.id)] = kControl;
      } else {
        types[size_t(a.id)] = kUserDefined;
        // llama.cpp expects user-defined tokens pre-normalized: its SPM-style spaces become ' '.
        std::string& s = tokens[size_t(a.id)];
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
            out += ' ';
            i += 2;
          } else {
            out += s[i];
          }
        }
        s = std::move(out);
      }
    }
    std::vector<std::string> merge_lines;
    merge_lines.reserve(merges.size());
    for (const json& m : merges) {
      auto [l, r] = merge_parts(m, what);
      merge_lines.push_back(l + " " + r);
    }
    kv.emplace_back("tokenizer.ggml.model", detail::str("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", detail::str(pre));
    kv.emplace_back("tokenizer.ggml.tokens", detail::str_array(tokens));
    kv.emplace_back("tokenizer.ggml.token_type", detail::i32_array(types));
    kv.emplace_back("tokenizer.ggml.merges", detail::str_array(merge_lines));
  }

  // Special token ids, in gguf-py's order and priority: tokenizer_config's named tokens
  // (matched against the added tokens), then special_tokens_map's, then config.json's and
  // generation_config.json's *_token_id. The first source that names one wins.
  static const std::pair<const char*, const char*> kSpecial[] = {
      {"bos", "bos_token_id"},       {"eos", "eos_token_id"}, {"unk", "unknown_token_id"},
      {"sep", "seperator_token_id"},  // sic
      {"pad", "padding_token_id"},   {"cls", "cls_token_id"}, {"mask", "mask_token_id"},
  };
  std::vector<std::pair<std::string, int64_t>> ids;
  auto set_id = [&](const std::string& typ, int64_t id) {
    if (id < 0 || id >= n_vocab) return;
    for (const auto& [k, v] : ids)
      if (k == typ) return;
    ids.emplace_back(typ, id);
  };
  std::vector<std::pair<std::string, bool>> add_flags;
  for (const auto* cfg : {&tc, &stm}) {
    if (!*cfg || !(*cfg)->is_object()) continue;
    for (const auto& [typ, key] : kSpecial) {
      if (cfg == &tc && (typ == std::string("bos") || typ == std::string("eos")))
        if (auto f = (*cfg)->find(std::string("add_") + typ + "_token");
            f != (*cfg)->end() && f->is_boolean())
          add_flags.emplace_back(typ, f->get<bool>());
      auto e = (*cfg)->find(std::string(typ) + "_token");
      if (e == (*cfg)->end()) continue;
      const std::string content = token_content(*e);
      for (const AddedToken& a : added)
        if (!content.empty() && a.content == content) {
          set_id(typ, a.id);
          break;
        }
    }
  }
  for (const json* cfg : {&config, gen ? &*gen : nullptr}) {
    if (!cfg || !cfg->is_object()) continue;
    for (const auto& [typ, key] : kSpecial) {
      auto e = cfg->find(std::string(typ) + "_token_id");
      if (e != cfg->end() && e->is_number_integer()) set_id(typ, e->get<int64_t>());
    }
  }
  for (const auto& [typ, id] : ids)
    for (const auto& [t2, key] : kSpecial)
      if (typ == t2)
        kv.emplace_back(std::string("tokenizer.ggml.") + key, detail::u32(uint32_t(id)));
  for (const auto& [typ, v] : add_flags)
    kv.emplace_back("tokenizer.ggml.add_" + typ + "_token", detail::boolean(v));
  add_chat_templates(dir, tc, kv);
  if (arch == "llama" && tc && tc->is_object())
    if (auto f = tc->find("add_prefix_space"); f != tc->end() && f->is_boolean())
      kv.emplace_back("tokenizer.ggml.add_space_prefix", detail::boolean(f->get<bool>()));
  return kv;
}

}  // namespace tf::hf
