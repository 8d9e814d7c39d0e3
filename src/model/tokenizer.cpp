#include "tensorzip/tokenizer.h"

#include <algorithm>
#include <functional>
#include <cstring>
#include <nlohmann/json.hpp>
#include <queue>

#include "core/json.h"
#include "tensorzip/error.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/mapped_file.h"
#include "model/pretokenize.h"
#include "model/wordpiece.h"

namespace tz {
namespace {

constexpr const char* kMetaSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from == to) return;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, from.size(), from) == 0) {
      out += to;
      i += from.size();
    } else {
      out += s[i++];
    }
  }
  s.swap(out);
}

// Length of the UTF-8 character starting at s[i] (1 for a stray or truncated byte).
size_t utf8_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t j = 1; j < n; ++j)
    if ((static_cast<unsigned char>(s[i + j]) & 0xc0) != 0x80) return 1;
  return n;
}

// "<0xAB>" -> 0xAB, else -1.
int byte_piece_value(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = p[size_t(i)];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// GPT-2's byte-to-character map: printable bytes stand for themselves, the other 68 (controls,
// space, DEL, NBSP, soft hyphen …) for U+0100 onwards in byte order, so every byte is a visible
// character and a word's bytes are a string of vocabulary characters.
struct ByteMap {
  std::string to_char[256];
  std::unordered_map<std::string, uint8_t> to_byte;
  ByteMap() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const int cp = printable ? b : next++;
      std::string u;  // UTF-8 of cp (< 0x800)
      if (cp < 0x80) u = char(cp);
      else u = {char(0xc0 | (cp >> 6)), char(0x80 | (cp & 0x3f))};
      to_char[b] = u;
      to_byte.emplace(u, uint8_t(b));
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

void Tokenizer::finish() {
  lookup_.clear();
  lookup_.reserve(pieces_.size() * 2);
  for (size_t i = 0; i < pieces_.size(); ++i) lookup_.emplace(pieces_[i], int(i));  // first wins on duplicates
  for (int& b : byte_id_) b = -1;
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const int v = byte_piece_value(pieces_[i]);
    if (v >= 0 && byte_id_[v] < 0) byte_id_[v] = int(i);
  }
  require(!pieces_.empty(), label_ + ": empty vocabulary");
  require(bos_ >= 0 && eos_ >= 0 && bos_ < vocab_size() && eos_ < vocab_size(), label_ + ": BOS/EOS id outside the vocabulary");
  // Special tokens cut out of the text before BPE: control (3), user-defined (4) and unknown (2)
  // types, longest text first so "<|im_start|>" wins over a shorter special inside it.
  specials_.clear();
  for (size_t i = 0; i < token_type_.size() && i < pieces_.size(); ++i)
    if ((token_type_[i] == 2 || token_type_[i] == 3 || token_type_[i] == 4) && !pieces_[i].empty()) specials_.push_back(int(i));
  std::stable_sort(specials_.begin(), specials_.end(), [&](int a, int b) { return pieces_[size_t(a)].size() > pieces_[size_t(b)].size(); });
}

int Tokenizer::find(std::string_view piece) const {
  auto it = lookup_.find(std::string(piece));
  return it == lookup_.end() ? -1 : it->second;
}

Tokenizer Tokenizer::from_llama2c(const std::string& path, int vocab_size) {
  auto mf = io::MappedFile::open(path);
  return parse_llama2c(mf->data(), mf->size(), path, vocab_size);
}

Tokenizer Tokenizer::parse_llama2c(const uint8_t* data, size_t size, const std::string& label, int vocab_size) {
  io::ByteReader r(data, size, label);
  Tokenizer t;
  t.label_ = label;
  const int32_t max_len = r.read<int32_t>("max_token_length");
  if (max_len <= 0 || max_len > (1 << 16)) r.fail("invalid max_token_length " + std::to_string(max_len) + " (not a llama2.c tokenizer?)");
  while (r.remaining() > 0 && (vocab_size < 0 || int(t.pieces_.size()) < vocab_size)) {
    const float score = r.read<float>("token score");
    const int32_t len = r.read<int32_t>("token length");
    if (len < 0 || len > max_len)
      r.fail("token " + std::to_string(t.pieces_.size()) + " has length " + std::to_string(len) + " (max_token_length " + std::to_string(max_len) + ")");
    t.pieces_.emplace_back(r.read_string(uint64_t(len), "token bytes"));
    t.scores_.push_back(score);
  }
  if (vocab_size >= 0 && int(t.pieces_.size()) < vocab_size)
    r.fail("holds " + std::to_string(t.pieces_.size()) + " tokens, the model needs " + std::to_string(vocab_size));
  t.finish();
  return t;
}

std::vector<uint8_t> Tokenizer::to_llama2c() const {
  require(kind_ == Kind::SentencePiece, label_ + ": only a SentencePiece tokenizer has a llama2.c tokenizer.bin form (this one is " +
                                             (kind_ == Kind::ByteBpe ? "byte-level BPE" : "WordPiece") + ")");
  std::vector<float> scores = scores_;
  if (!merge_rank_.empty()) {
    std::fill(scores.begin(), scores.end(), -1e30f);
    for (const auto& [pair, rank] : merge_rank_) {
      const int id = find(pieces_[size_t(pair.first)] + pieces_[size_t(pair.second)]);
      if (id >= 0) scores[size_t(id)] = std::max(scores[size_t(id)], -float(rank));
    }
  }
  std::vector<uint8_t> out;
  const auto put = [&](const void* p, size_t n) {
    if (n == 0) return;
    out.resize(out.size() + n);
    std::memcpy(out.data() + out.size() - n, p, n);
  };
  int32_t max_len = 1;
  for (const auto& p : pieces_) max_len = std::max(max_len, int32_t(p.size()));
  put(&max_len, 4);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const int32_t len = int32_t(pieces_[i].size());
    put(&scores[i], 4);
    put(&len, 4);
    put(pieces_[i].data(), pieces_[i].size());
  }
  return out;
}

Tokenizer Tokenizer::from_llama2c_bytes(const uint8_t* data, size_t size, const std::string& label, const Settings& s) {
  Tokenizer t = parse_llama2c(data, size, label);
  t.space_ = s.space;
  t.dummy_prefix_ = s.dummy_prefix;
  t.bos_ = s.bos;
  t.eos_ = s.eos;
  require(!t.space_.empty(), label + ": empty space symbol");
  t.finish();
  return t;
}

void Tokenizer::finish_wordpiece() {
  kind_ = Kind::WordPiece;
  dummy_prefix_ = true;  // decoding drops the first word's leading space
  finish();
  require(unk_ >= 0 && unk_ < vocab_size() && sep_ >= 0 && sep_ < vocab_size(), label_ + ": WordPiece [UNK] / [SEP] id outside the vocabulary");
  max_piece_len_ = 0;
  for (const auto& p : pieces_) max_piece_len_ = std::max(max_piece_len_, p.size());
}

std::string Tokenizer::to_wordpiece_json() const {
  require(kind_ == Kind::WordPiece, label_ + ": to_wordpiece_json of a tokenizer that is not WordPiece");
  nlohmann::json j = {{"pieces", pieces_}, {"cls", bos_}, {"sep", sep_}, {"unk", unk_}, {"eos", eos_}, {"add_bos", add_bos_}};
  if (!token_type_.empty()) j["token_type"] = token_type_;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Tokenizer Tokenizer::from_wordpiece_json(std::string_view text, const std::string& label) {
  const nlohmann::json j = json_io::parse(text, label);
  Tokenizer t;
  t.label_ = label;
  try {
    require(j.is_object() && j.contains("pieces") && j["pieces"].is_array(), label + ": WordPiece vocabulary without 'pieces'");
    t.pieces_ = j["pieces"].get<std::vector<std::string>>();
    t.scores_.assign(t.pieces_.size(), 0.f);
    const int64_t hi = int64_t(t.pieces_.size()) - 1;
    t.bos_ = int(json_io::get_int(j, "cls", label, 0, hi));
    t.sep_ = int(json_io::get_int(j, "sep", label, 0, hi));
    t.unk_ = int(json_io::get_int(j, "unk", label, 0, hi));
    t.eos_ = int(json_io::get_int(j, "eos", label, 0, hi, t.sep_));
    t.add_bos_ = j.value("add_bos", true);
    if (j.contains("token_type")) {
      t.token_type_ = j["token_type"].get<std::vector<int8_t>>();
      require(t.token_type_.size() == t.pieces_.size(), label + ": WordPiece 'token_type' does not match the piece count");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(label + ": " + e.what());
  }
  t.space_ = kMetaSpace;
  t.finish_wordpiece();
  return t;
}

Tokenizer Tokenizer::from_gguf(const io::GgufFile& f) {
  const auto* model = f.find("tokenizer.ggml.model");
  require(model != nullptr, f.label() + ": no tokenizer inside (tokenizer.ggml.model missing); pass --tokenizer");
  const std::string kind = model->as_string();
  require(kind == "llama" || kind == "gpt2" || kind == "bert",
          f.label() + ": tokenizer model '" + kind + "' is not supported (SentencePiece 'llama', byte-level BPE 'gpt2', WordPiece 'bert')");
  const auto* tokens = f.find("tokenizer.ggml.tokens");
  require(tokens != nullptr && tokens->type == io::GgufType::ARRAY && tokens->array_type == io::GgufType::STRING,
          f.label() + ": tokenizer.ggml.tokens missing or not a string array");
  Tokenizer t;
  t.label_ = f.label();
  for (const auto& it : tokens->items) t.pieces_.push_back(std::get<std::string>(it));
  t.scores_.assign(t.pieces_.size(), 0.f);
  if (const auto* scores = f.find("tokenizer.ggml.scores")) {
    require(scores->type == io::GgufType::ARRAY && scores->items.size() == t.pieces_.size(),
            f.label() + ": tokenizer.ggml.scores does not match the token count");
    for (size_t i = 0; i < t.pieces_.size(); ++i) {
      const auto& s = scores->items[i];
      t.scores_[i] = std::holds_alternative<double>(s) ? float(std::get<double>(s)) : 0.f;
    }
  }
  t.space_ = kMetaSpace;
  if (const auto* v = f.find("tokenizer.ggml.bos_token_id")) t.bos_ = int(v->as_uint());
  if (const auto* v = f.find("tokenizer.ggml.eos_token_id")) t.eos_ = int(v->as_uint());
  const auto flag = [&](const char* key, bool& out) {
    if (const auto* v = f.find(key); v && !v->items.empty() && std::holds_alternative<bool>(v->items[0])) out = std::get<bool>(v->items[0]);
  };
  flag("tokenizer.ggml.add_space_prefix", t.dummy_prefix_);
  flag("tokenizer.ggml.add_bos_token", t.add_bos_);
  if (const auto* types = f.find("tokenizer.ggml.token_type")) {
    require(types->type == io::GgufType::ARRAY && types->items.size() == t.pieces_.size(),
            f.label() + ": tokenizer.ggml.token_type does not match the token count");
    for (const auto& it : types->items)
      t.token_type_.push_back(int8_t(std::holds_alternative<int64_t>(it) ? std::get<int64_t>(it) : std::holds_alternative<uint64_t>(it) ? int64_t(std::get<uint64_t>(it)) : 1));
  }
  if (kind == "bert") {  // WordPiece: llama.cpp's defaults [CLS] 101, [SEP] 102, [UNK] 100
    t.kind_ = Kind::WordPiece;
    t.bos_ = 101, t.sep_ = 102, t.unk_ = 100;
    if (const auto* v = f.find("tokenizer.ggml.bos_token_id")) t.bos_ = int(v->as_uint());
    if (const auto* v = f.find("tokenizer.ggml.seperator_token_id")) t.sep_ = int(v->as_uint());
    if (const auto* v = f.find("tokenizer.ggml.unknown_token_id")) t.unk_ = int(v->as_uint());
    if (!f.find("tokenizer.ggml.eos_token_id")) t.eos_ = t.sep_;
    t.finish_wordpiece();
    return t;
  }
  if (kind == "gpt2") {
    t.kind_ = Kind::ByteBpe;
    t.space_ = " ";
    t.dummy_prefix_ = false;
    if (!f.find("tokenizer.ggml.add_bos_token")) t.add_bos_ = false;  // llama.cpp's default for BPE vocabularies
    const auto* pre = f.find("tokenizer.ggml.pre");
    const std::string pre_name = pre ? pre->as_string() : "default";
    const auto regexes = PreTokenizer::regexes_for(pre_name, &t.ignore_merges_);
    require(regexes.has_value(), f.label() + ": pre-tokenizer '" + pre_name + "' (tokenizer.ggml.pre) is not supported");
    t.pre_ = std::make_shared<PreTokenizer>(*regexes);
    t.finish();
    const auto* merges = f.find("tokenizer.ggml.merges");
    require(merges != nullptr && merges->type == io::GgufType::ARRAY && merges->array_type == io::GgufType::STRING,
            f.label() + ": a gpt2 tokenizer needs tokenizer.ggml.merges");
    int rank = 0;
    for (const auto& m : merges->items) {
      const std::string& line = std::get<std::string>(m);
      const size_t sp = line.find(' ', 1);
      require(sp != std::string::npos, f.label() + ": merge '" + line + "' has no space");
      const int a = t.find(std::string_view(line).substr(0, sp)), b = t.find(std::string_view(line).substr(sp + 1));
      if (a >= 0 && b >= 0) t.merge_rank_.emplace(std::pair{a, b}, rank);
      ++rank;
    }
    return t;
  }
  t.finish();
  return t;
}

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
  auto mf = io::MappedFile::open(path);
  return parse_hf_json(std::string_view(reinterpret_cast<const char*>(mf->data()), mf->size()), path);
}

// tokenizer.json with a ByteLevel pre-tokenizer (GPT-2, Llama 3, Qwen2, DeepSeek …): the
// pre-tokenizer's Split expressions in order (a ByteLevel with use_regex adds GPT-2's, Digits
// \p{N}), added tokens as specials (control when "special", else user-defined), BOS from a
// TemplateProcessing post-processor. A normalizer (Qwen2's NFC) is not applied, as llama.cpp does
// not for the same vocabulary in GGUF.
struct HfTokenizerJson {
  static void byte_level(const nlohmann::json& j, Tokenizer& t);
};

void HfTokenizerJson::byte_level(const nlohmann::json& j, Tokenizer& t) {
  using Kind = Tokenizer::Kind;
  using nlohmann::json;
  const std::string& label = t.label_;
  t.kind_ = Kind::ByteBpe;
  t.space_ = " ";
  t.dummy_prefix_ = false;
  t.add_bos_ = false;
  t.ignore_merges_ = j.at("model").value("ignore_merges", false);
  t.token_type_.assign(t.pieces_.size(), 1);
  for (const auto& at : j.value("added_tokens", json::array()))
    t.token_type_[size_t(at.at("id").get<int64_t>())] = int8_t(at.value("special", false) ? 3 : 4);
  std::vector<std::string> regexes;
  const std::function<void(const json&)> collect = [&](const json& node) {
    const std::string type = node.value("type", "");
    if (type == "Sequence") {
      for (const auto& sub : node.at("pretokenizers")) collect(sub);
    } else if (type == "Split") {
      const json& pat = node.at("pattern");
      require(node.value("behavior", "Isolated") == "Isolated" && !node.value("invert", false),
              label + ": pre-tokenizer Split with behavior '" + node.value("behavior", "") + "' is not supported (Isolated)");
      if (pat.contains("Regex")) regexes.push_back(pat.at("Regex").get<std::string>());
      else regexes.push_back("\\Q" + pat.at("String").get<std::string>() + "\\E");
    } else if (type == "ByteLevel") {
      require(!node.value("add_prefix_space", false), label + ": ByteLevel add_prefix_space is not supported");
      if (node.value("use_regex", true)) regexes.push_back((*PreTokenizer::regexes_for("gpt-2"))[0]);
    } else if (type == "Digits") {
      regexes.push_back(node.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    } else {
      throw Error(label + ": pre-tokenizer '" + type + "' is not supported with byte-level BPE (Sequence, Split, ByteLevel, Digits)");
    }
  };
  collect(j.at("pre_tokenizer"));
  require(!regexes.empty(), label + ": the byte-level pre-tokenizer has no expressions");
  t.pre_ = std::make_shared<PreTokenizer>(regexes);
  t.finish();
  // BOS: the first special token of a TemplateProcessing "single" template.
  const json pp = j.value("post_processor", json());
  const auto bos_from = [&](const json& proc) {
    if (!proc.is_object() || proc.value("type", "") != "TemplateProcessing") return;
    for (const auto& piece : proc.value("single", json::array()))
      if (piece.contains("SpecialToken")) {
        if (const int id = t.find(piece["SpecialToken"].at("id").get<std::string>()); id >= 0) t.bos_ = id, t.add_bos_ = true;
        return;
      } else {
        return;
      }
  };
  bos_from(pp);
  if (pp.is_object() && pp.value("type", "") == "Sequence")
    for (const auto& proc : pp.value("processors", json::array())) bos_from(proc);
  for (const char* e : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>"})
    if (const int id = t.find(e); id >= 0) {
      t.eos_ = id;
      break;
    }
  if (!t.add_bos_ && t.bos_ >= t.vocab_size()) t.bos_ = t.eos_;
  // Written by to_hf_json (tensorzip files): the exact BOS / EOS ids and the BOS flag.
  if (const json sp = j.value("tensorzip_special", json()); sp.is_object()) {
    t.bos_ = int(json_io::get_int(sp, "bos", label, 0, t.vocab_size() - 1));
    t.eos_ = int(json_io::get_int(sp, "eos", label, 0, t.vocab_size() - 1));
    t.add_bos_ = sp.value("add_bos", false);
  }
}

std::string Tokenizer::to_hf_json() const {
  using nlohmann::json;
  require(kind_ == Kind::ByteBpe, label_ + ": only a byte-level BPE tokenizer is written as tokenizer.json");
  json vocab = json::object(), added = json::array(), merges = json::array(), pre = json::array();
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const int type = i < token_type_.size() ? token_type_[i] : 1;
    if (type == 3 || type == 4) added.push_back({{"id", i}, {"content", pieces_[i]}, {"special", type == 3}});
    if (!vocab.contains(pieces_[i])) vocab[pieces_[i]] = i;
  }
  std::vector<std::pair<int, std::pair<int, int>>> by_rank;
  for (const auto& [pair, rank] : merge_rank_) by_rank.push_back({rank, pair});
  std::sort(by_rank.begin(), by_rank.end());
  for (const auto& [rank, pair] : by_rank) merges.push_back({pieces_[size_t(pair.first)], pieces_[size_t(pair.second)]});
  for (const auto& re : pre_->regexes())
    pre.push_back({{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
  pre.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  const json j = {{"version", "1.0"},
                  {"added_tokens", added},
                  {"normalizer", nullptr},
                  {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", pre}}},
                  {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges_}}},
                  {"tensorzip_special", {{"bos", bos_}, {"eos", eos_}, {"add_bos", add_bos_}}}};
  return json_io::dump(j);
}

Tokenizer Tokenizer::parse_hf_json(std::string_view text, const std::string& label) {
  using nlohmann::json;
  const json j = tz::json_io::parse(text, label);
  try {
    const json& model = j.at("model");
    const std::string type = model.value("type", "");
    require(type == "BPE", label + ": tokenizer model type '" + type + "' is not supported (only BPE)");
    const auto has_bytelevel = [](const json& node) {
      return node.is_object() && (node.value("type", "") == "ByteLevel" ||
                                  (node.contains("pretokenizers") && tz::json_io::dump(node).find("\"ByteLevel\"") != std::string::npos));
    };
    const bool byte_level = has_bytelevel(j.value("pre_tokenizer", json()));
    const auto id_of = [&](const json& v) {
      require(v.is_number_integer(), label + ": token id " + tz::json_io::dump(v) + " is not an integer");
      const int64_t id = v.get<int64_t>();
      require(id >= 0 && id < int64_t(1u << 24), label + ": token id " + std::to_string(id) + " out of range");
      return id;
    };
    Tokenizer t;
    t.label_ = label;
    const json& vocab = model.at("vocab");
    require(vocab.is_object(), label + ": model.vocab is not an object");
    size_t n = 0;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) n = std::max(n, size_t(id_of(it.value())) + 1);
    require(n > 0 && n <= (1u << 24), label + ": vocabulary size out of range");
    t.pieces_.assign(n, std::string());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      t.pieces_[size_t(id_of(it.value()))] = it.key();
    }
    for (const auto& at : j.value("added_tokens", json::array())) {
      const int64_t id = id_of(at.at("id"));
      if (size_t(id) >= t.pieces_.size()) t.pieces_.resize(size_t(id) + 1);
      t.pieces_[size_t(id)] = at.at("content").get<std::string>();
    }
    t.scores_.assign(t.pieces_.size(), 0.f);
    if (byte_level) HfTokenizerJson::byte_level(j, t);
    t.finish();
    // Merges: "a b" strings (older files) or ["a", "b"] pairs.
    int rank = 0;
    for (const auto& m : model.value("merges", json::array())) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        require(sp != std::string::npos, label + ": merge '" + s + "' has no space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      const int ia = t.find(a), ib = t.find(b), iab = t.find(a + b);
      require(ia >= 0 && ib >= 0 && iab >= 0, label + ": merge '" + a + " " + b + "' names a piece not in the vocabulary");
      t.merge_rank_.emplace(std::pair{ia, ib}, rank++);
    }
    if (byte_level) return t;
    // SentencePiece-style normalisation: Replace(" " -> "▁") and Prepend("▁"), or a Metaspace
    // pre-tokenizer.
    const std::string dump = tz::json_io::dump(j.value("normalizer", json())) + tz::json_io::dump(j.value("pre_tokenizer", json()));
    const bool metaspace = dump.find(kMetaSpace) != std::string::npos || dump.find("Metaspace") != std::string::npos;
    t.space_ = metaspace ? kMetaSpace : " ";
    t.dummy_prefix_ = dump.find("Prepend") != std::string::npos ||
                      (dump.find("Metaspace") != std::string::npos && dump.find("\"never\"") == std::string::npos &&
                       dump.find("\"add_prefix_space\":false") == std::string::npos);
    if (int id = t.find("<s>"); id >= 0) t.bos_ = id;
    if (int id = t.find("</s>"); id >= 0) t.eos_ = id;
    t.finish();
    return t;
  } catch (const json::exception& e) {
    throw Error(label + ": malformed tokenizer.json (" + e.what() + ")");
  }
}

std::vector<int> Tokenizer::encode(std::string_view raw, bool bos, bool eos, bool parse_special) const {
  std::vector<int> out;
  if (bos && add_bos_) out.push_back(bos_);
  // Cut the special tokens out, then encode the text between them. A fragment after a special
  // token counts as a start (SentencePiece then adds its dummy-prefix space again, as llama.cpp).
  size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    size_t best_at = std::string_view::npos;
    int best = -1;
    for (int id : specials_) {
      if (!parse_special && token_type_[size_t(id)] != 4) continue;  // only user-defined without parse_special
      const size_t at = raw.find(pieces_[size_t(id)], start);
      if (at != std::string_view::npos && (at < best_at || (at == best_at && pieces_[size_t(id)].size() > pieces_[size_t(best)].size()))) {
        best_at = at;
        best = id;
      }
    }
    const size_t end = best < 0 ? raw.size() : best_at;
    if (end > start) encode_text(raw.substr(start, end - start), first, out);
    if (best < 0) break;
    out.push_back(best);
    start = best_at + pieces_[size_t(best)].size();
    first = true;
  }
  if (eos || (bos && kind_ == Kind::WordPiece)) out.push_back(kind_ == Kind::WordPiece ? sep_ : eos_);  // BERT: [CLS] … [SEP]
  return out;
}

void Tokenizer::encode_text(std::string_view raw, bool first, std::vector<int>& out) const {
  if (kind_ == Kind::WordPiece) {
    // Each word with the word-start mark, cut greedily into the longest vocabulary pieces (byte
    // substrings, as llama.cpp); a word with a piece that cannot be matched is one [UNK].
    for (const std::string& w : wordpiece_words(raw)) {
      const std::string word = kMetaSpace + w;
      const size_t n = word.size(), before = out.size();
      for (size_t i = 0; i < n; ++i) {
        bool match = false;
        for (size_t j = std::min(n, i + max_piece_len_ + 1); j > i; --j)
          if (const int id = find(std::string_view(word).substr(i, j - i)); id >= 0) {
            out.push_back(id);
            match = true;
            i = j - 1;
            break;
          }
        if (!match) {
          out.resize(before);
          break;
        }
      }
      if (out.size() == before) out.push_back(unk_);
    }
    return;
  }
  if (kind_ == Kind::ByteBpe) {
    const ByteMap& bm = byte_map();
    std::string word;
    for (std::string_view w : pre_->split(raw)) {
      word.clear();
      for (char ch : w) word += bm.to_char[static_cast<unsigned char>(ch)];
      if (ignore_merges_)
        if (const int id = find(word); id >= 0) {
          out.push_back(id);
          continue;
        }
      merge(word, out);
    }
    return;
  }
  std::string text(raw);
  if (space_ != " ") replace_all(text, " ", space_);
  if (dummy_prefix_ && first) text = space_ + text;
  merge(text, out);
}

void Tokenizer::merge(std::string_view text, std::vector<int>& out) const {
  {
    // Initial symbols: one per character, or its bytes when the character is not a piece.
    struct Sym { int id, prev, next; };
    std::vector<Sym> sym;
    sym.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      const size_t n = utf8_len(text, i);
      const int id = find(std::string_view(text).substr(i, n));
      if (id >= 0) {
        sym.push_back({id, int(sym.size()) - 1, int(sym.size()) + 1});
      } else {
        for (size_t b = 0; b < n; ++b) {
          const int bid = byte_id_[static_cast<unsigned char>(text[i + b])];
          sym.push_back({bid >= 0 ? bid : 0, int(sym.size()) - 1, int(sym.size()) + 1});  // 0 = <unk>
        }
      }
      i += n;
    }
    if (!sym.empty()) sym.back().next = -1;
    // Candidate merges, best first; ties to the leftmost. Stale entries are skipped on pop.
    struct Cand { float score; int left, right, left_id, right_id, merged; };
    auto worse = [](const Cand& a, const Cand& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
    std::string buf;
    auto consider = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const int a = sym[size_t(l)].id, b = sym[size_t(r)].id;
      if (!merge_rank_.empty()) {
        auto it = merge_rank_.find({a, b});
        if (it == merge_rank_.end()) return;
        buf = pieces_[size_t(a)] + pieces_[size_t(b)];
        const int merged = find(buf);
        if (merged < 0) return;  // a merge whose product is not a token
        heap.push({-float(it->second), l, r, a, b, merged});
      } else {
        buf = pieces_[size_t(a)];
        buf += pieces_[size_t(b)];
        auto it = lookup_.find(buf);
        if (it == lookup_.end()) return;
        heap.push({scores_[size_t(it->second)], l, r, a, b, it->second});
      }
    };
    for (size_t i = 0; i + 1 < sym.size(); ++i) consider(int(i), int(i) + 1);
    std::vector<char> dead(sym.size(), 0);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      Sym& L = sym[size_t(c.left)];
      if (dead[size_t(c.left)] || dead[size_t(c.right)] || L.next != c.right || L.id != c.left_id ||
          sym[size_t(c.right)].id != c.right_id)
        continue;
      L.id = c.merged;
      dead[size_t(c.right)] = 1;
      L.next = sym[size_t(c.right)].next;
      if (L.next >= 0) sym[size_t(L.next)].prev = c.left;
      consider(L.prev, c.left);
      consider(c.left, L.next);
    }
    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[size_t(i)].next) out.push_back(sym[size_t(i)].id);
  }
}

std::string Tokenizer::piece_text(int id) const {
  const std::string& p = pieces_[size_t(id)];
  const bool special = size_t(id) < token_type_.size() && (token_type_[size_t(id)] == 3 || token_type_[size_t(id)] == 4);
  if (special) return p;
  const ByteMap& bm = byte_map();
  std::string out;
  for (size_t i = 0; i < p.size();) {
    const size_t n = utf8_len(p, i);
    const auto it = bm.to_byte.find(p.substr(i, n));
    if (it != bm.to_byte.end()) out += char(it->second);
    else out += p.substr(i, n);  // not a byte character: kept as written
    i += n;
  }
  return out;
}

std::string Tokenizer::decode_piece(int prev, int token) const {
  require(token >= 0 && token < vocab_size(), label_ + ": token id " + std::to_string(token) + " outside the vocabulary");
  if (kind_ == Kind::ByteBpe) return piece_text(token);
  const std::string& p = pieces_[size_t(token)];
  const int b = byte_piece_value(p);
  if (b >= 0) return std::string(1, char(b));
  std::string s = p;
  if (space_ != " ") replace_all(s, space_, " ");
  if (prev == bos_ && !s.empty() && s[0] == ' ') s.erase(0, 1);
  return s;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string s;
  bool first = true;
  for (int id : ids) {
    if (id == bos_ || id == eos_) continue;
    require(id >= 0 && id < vocab_size(), label_ + ": token id " + std::to_string(id) + " outside the vocabulary");
    if (kind_ == Kind::ByteBpe) {
      s += piece_text(id);
      continue;
    }
    const std::string& p = pieces_[size_t(id)];
    const int b = byte_piece_value(p);
    std::string piece = b >= 0 ? std::string(1, char(b)) : p;
    if (b < 0 && space_ != " ") replace_all(piece, space_, " ");
    if (first && dummy_prefix_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    first = false;
    s += piece;
  }
  return s;
}

}  // namespace tz
