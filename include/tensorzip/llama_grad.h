// A differentiable LLaMA forward pass in f32: one whole sequence at a time (no KV cache), keeping
// every activation, and its backward pass to the weights of the linear layers and the RMSNorms.
// It computes exactly what LlamaSession computes on f32 weights (same RMSNorm, rotary table,
// grouped-query attention and SwiGLU), so the compressor can tune quantization parameters against
// the loss of the model it ships (tune_quantized, compress.h). Dense f32 GEMMs (OpenBLAS); made for
// small models and calibration-sized data, not for pre-training.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "tensorzip/llama.h"

namespace tz {

// The weights a pass reads: dense f32, [out, in] row-major, sizes as in LlamaSource.
struct LlamaWeightsView {
  struct Layer {
    const float *att_norm = nullptr, *ffn_norm = nullptr;
    const float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr, *w1 = nullptr, *w2 = nullptr, *w3 = nullptr;
  };
  const float* embedding = nullptr;  // [vocab, dim]
  const float* output = nullptr;     // [vocab, dim] (the embedding when tied)
  const float* final_norm = nullptr;
  std::vector<Layer> layers;
};

// Gradients, accumulated (+=) by backward; zero() clears them.
struct LlamaGradients {
  struct Layer {
    std::vector<float> att_norm, ffn_norm, wq, wk, wv, wo, w1, w2, w3;
    // Every field, for loops over all of them (const or not, as the layer).
    template <class Self> static auto fields(Self& l) {
      return std::array{&l.att_norm, &l.ffn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3};
    }
  };
  std::vector<Layer> layers;
  std::vector<float> final_norm;
  std::vector<float> output;     // only with `with_output` (a classifier of its own)
  std::vector<float> embedding;  // only with `with_embedding` (with a tied classifier: both uses)
  LlamaGradients() = default;
  LlamaGradients(const LlamaConfig& c, bool with_output, bool with_embedding = false);
  void zero();
  void add(const LlamaGradients& o);  // this += o
};

class LlamaGrad {
 public:
  LlamaGrad(const LlamaConfig& c, int max_len);
  // logits [n, vocab] of tokens[0..n) at positions 0..n-1; remembers the activations.
  void forward(const LlamaWeightsView& w, const int* tokens, int n, float* logits);
  // dL/dlogits [n, vocab] of the last forward (same weights) -> g +=.
  void backward(const LlamaWeightsView& w, const float* dlogits, LlamaGradients& g);

 private:
  struct LayerActs {
    std::vector<float> x, r1, xn, q, k, v, p, att, x2, r2, xn2, a, b, h;
  };
  LlamaConfig c_;
  int max_len_, n_ = 0;
  std::vector<int> tokens_;
  std::vector<float> cos_, sin_;  // [pos][head_size / 2], as LlamaSession
  std::vector<LayerActs> acts_;
  std::vector<float> xl_, rf_, xf_;  // last layer's output, final norm's 1/rms and output
  // backward scratch
  std::vector<float> dx_, dxn_, dq_, dk_, dv_, datt_, dp_, dh_, da_, db_;
};

}  // namespace tz
