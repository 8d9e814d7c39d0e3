// llama2.c checkpoints (Karpathy's llama2.c `run.c` / `export.py`):
//  - version 0 ("legacy"): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//    seq_len) then fp32 tensors; a negative vocab_size means the classifier is NOT shared with
//    the embedding (and is stored last). Includes two unused RoPE tables.
//  - version 1: magic "ak42" (0x616b3432), int32 version = 1, the same 7 ints, a uint8
//    shared-classifier flag, zero padding to 256 bytes, then fp32 tensors in export.py's order.
// Tensors keep the file's stacked layout: wq is [n_layers, dim, dim] ([out, in] per layer).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensorzip/io/mapped_file.h"
#include "tensorzip/tensor.h"

namespace tz::io {

struct Llama2cConfig {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
  int version = 0;
  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return dim / n_heads * n_kv_heads; }
};

struct Llama2cTensor { std::string name; Shape shape; uint64_t offset = 0; };

class Llama2cCheckpoint {
 public:
  static Llama2cCheckpoint open(const std::string& path);
  static Llama2cCheckpoint parse(const uint8_t* data, size_t size, const std::string& label,
                                 std::shared_ptr<const void> keepalive = nullptr);

  const Llama2cConfig& config() const { return cfg_; }
  const std::vector<Llama2cTensor>& tensors() const { return tensors_; }
  Tensor tensor(const std::string& name) const;  // zero-copy F32 view
  size_t file_size() const { return size_; }
  const std::string& label() const { return label_; }

 private:
  std::string label_;
  std::shared_ptr<const void> keepalive_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  Llama2cConfig cfg_;
  std::vector<Llama2cTensor> tensors_;
};

}  // namespace tz::io
