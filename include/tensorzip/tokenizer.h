// Three tokenizers behind one interface, as GGUF's `tokenizer.ggml.model` names them ("bert":
// WordPiece, llama.cpp's WPM: wordpiece.h's pre-processing, then longest-match pieces):
// "llama" — SentencePiece-style BPE, below; "gpt2" — byte-level BPE (GPT-2, Llama 3, Qwen2,
// DeepSeek, Falcon, StarCoder, …): the text is cut into words by the pre-tokenizer that
// `tokenizer.ggml.pre` names (pretokenize.h), each word's bytes are mapped to GPT-2's printable
// byte characters, and adjacent pieces are merged by rank from `tokenizer.ggml.merges`.
// In both, special tokens are cut out of the text first: user-defined tokens always, control
// tokens (<|im_start|>, <s> …) when the caller asks (parse_special), as llama.cpp does.
//
// SentencePiece-style BPE tokenizer (the LLaMA family's): text is normalised (spaces become the
// vocabulary's space symbol, a dummy-prefix space is added), split into UTF-8 characters looked up
// in the vocabulary (unknown characters fall back to their bytes' <0xXX> tokens), then adjacent
// pieces are merged, best pair first, until no pair merges. "Best" is the merged piece's score
// (llama2.c tokenizer.bin, GGUF tokenizer.ggml.scores) or the pair's rank in a merges list
// (Hugging Face tokenizer.json). Merging uses a heap, O(n log n), so a whole evaluation text can be
// encoded at once; ties go to the leftmost pair, as llama2.c's scan does.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tz {
namespace io { class GgufFile; }

class Tokenizer {
 public:
  // llama2.c's tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, bytes.
  static Tokenizer from_llama2c(const std::string& path, int vocab_size = -1);
  static Tokenizer parse_llama2c(const uint8_t* data, size_t size, const std::string& label, int vocab_size = -1);
  // GGUF metadata tokenizer.ggml.* with model "llama" (SentencePiece). Other models are refused.
  static Tokenizer from_gguf(const io::GgufFile& f);
  // Hugging Face tokenizer.json with a BPE model: SentencePiece-style (vocab + merges,
  // byte_fallback) or byte-level (a ByteLevel pre-tokenizer: its Split expressions, added tokens).
  static Tokenizer from_hf_json(const std::string& path);
  static Tokenizer parse_hf_json(std::string_view json, const std::string& label);

  // For files that carry their tokenizer (tensorzip files): the vocabulary as llama2.c tokenizer.bin
  // bytes plus the settings, and back. Merge ranks become scores (−rank on the merged piece).
  struct Settings { std::string space = " "; bool dummy_prefix = true; int bos = 1, eos = 2; };
  std::vector<uint8_t> to_llama2c() const;
  // A byte-level BPE tokenizer as a Hugging Face tokenizer.json that parse_hf_json reads back to
  // the same tokenizer (its expressions as Split pre-tokenizers; BOS / EOS kept exactly).
  std::string to_hf_json() const;
  // A WordPiece vocabulary as JSON ({"pieces", "cls", "sep", "unk", "eos", "token_type"}), and back:
  // how tensorzip files carry it (the same encodings as the GGUF it came from).
  std::string to_wordpiece_json() const;
  static Tokenizer from_wordpiece_json(std::string_view json, const std::string& label);
  Settings settings() const { return {space_, dummy_prefix_, bos_, eos_}; }
  static Tokenizer from_llama2c_bytes(const uint8_t* data, size_t size, const std::string& label, const Settings& s);

  enum class Kind { SentencePiece, ByteBpe, WordPiece };
  Kind kind() const { return kind_; }
  // bos: prepend BOS when the vocabulary adds one (GGUF tokenizer.ggml.add_bos_token; default yes).
  std::vector<int> encode(std::string_view text, bool bos, bool eos = false, bool parse_special = false) const;
  // The text of `token` following `prev`, as llama2.c's run prints it: byte tokens become their
  // byte, the space symbol a space, and the leading space after BOS is dropped.
  std::string decode_piece(int prev, int token) const;
  // The whole text of a sequence (inverse of encode: decode(encode(t, bos)) == t).
  std::string decode(const std::vector<int>& ids) const;

  int vocab_size() const { return int(pieces_.size()); }
  int bos_id() const { return bos_; }
  int eos_id() const { return eos_; }
  const std::string& piece(int id) const { return pieces_.at(size_t(id)); }
  float score(int id) const { return scores_.at(size_t(id)); }
  // The vocabulary's space symbol: " " (llama2.c files) or U+2581 (SentencePiece, GGUF, tokenizer.json).
  const std::string& space_symbol() const { return space_; }
  int find(std::string_view piece) const;  // -1 when absent
  const std::string& label() const { return label_; }

 private:
  void finish();  // builds the lookup tables once the pieces are set
  void finish_wordpiece();  // finish() plus the WordPiece ids' checks and the longest piece
  friend struct HfTokenizerJson;  // tokenizer.json's byte-level parts (tokenizer.cpp)
  void encode_text(std::string_view text, bool first, std::vector<int>& out) const;  // one fragment, no specials
  void merge(std::string_view text, std::vector<int>& out) const;                    // the BPE merge loop
  std::string piece_text(int id) const;  // what a token stands for (byte BPE: its bytes)
  Kind kind_ = Kind::SentencePiece;
  std::shared_ptr<const class PreTokenizer> pre_;  // byte BPE
  bool ignore_merges_ = false;                     // byte BPE, llama3: a word that is a token is taken whole
  bool add_bos_ = true;
  std::vector<int8_t> token_type_;                 // GGUF token types (1 normal … 6 byte), empty when unknown
  std::vector<int> specials_;                      // control / user-defined ids, longest text first
  std::string label_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> lookup_;
  std::map<std::pair<int, int>, int> merge_rank_;  // merges mode when non-empty
  std::string space_ = " ";                        // " " (llama2.c) or "\xe2\x96\x81" (U+2581)
  bool dummy_prefix_ = true;
  int bos_ = 1, eos_ = 2;
  int sep_ = -1, unk_ = 0;      // WordPiece: [SEP] (ends an encoding with BOS), [UNK]
  size_t max_piece_len_ = 0;    // WordPiece: the longest piece in bytes
  int byte_id_[256];
};

}  // namespace tz
