// Model compression: every selected linear layer of a checkpoint through a quantizer (quantize.h),
// calibrated layer by layer, into a LlamaSource whose compressed layers write to a tensorzip file.
//
// LLaMA-family models stream their calibration sequences through the runner one layer at a time:
// the hidden states of all sequences enter layer l, its linear layers' inputs are collected (second
// moment, mean |x|, a sample of rows), the layer is compressed, and the states are run through the
// compressed layer to become layer l+1's input (sequential, as GPTQ does). Memory: the states plus
// one layer's statistics. Any other checkpoint: the selected 2-D tensors, calibrated from captured
// activations (a safetensors file with one [rows, in] tensor per weight name).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/quantize.h"

namespace tz {

// After every layer is compressed: end-to-end tuning of the compressed model by distillation from
// the uncompressed one on the calibration sequences. Loss: the mean KL divergence of the original's
// next-token distribution from the compressed model's; gradients from LlamaGrad (llama_grad.h);
// Adam with a cosine-decayed step on log(scale) per group and, with `codes`, on a relaxed code per
// weight (straight-through rounding: QAT around the compressor's solution; EfficientQAT's E2E-QP,
// PEQA). Zero points, format and size do not change. On stories260K at 4 bits, group 32 (f32
// 4.2008): AWQ 4.6011 -> 4.2794–4.2829, GPTQ --clip 4.4219 -> 4.2706–4.2804 (3 seeds each),
// docs/benchmarks.md.
struct TuneOptions {
  int epochs = 0;          // passes over the calibration sequences; 0: no tuning
  double lr = 1e-2;        // Adam step on log(scale) (relative change of a scale per step)
  int batch = 4;           // sequences per step
  bool codes = false;      // also tune the codes
  double codes_lr = 0.007; // Adam step on the relaxed codes, in code units
  bool norms = false;      // also tune the RMSNorm weights (stored f32: no extra bits)
  bool embedding = false;  // also tune the token embedding (kept f32; a tied classifier with it)
  uint64_t seed = 1;       // order of the sequences
};
struct TuneReport {
  int steps = 0;
  int64_t params = 0;                  // scales (+ norm / embedding weights) tuned
  int64_t codes_changed = 0;           // weights whose code moved (with codes)
  double kl_before = 0, kl_after = 0;  // mean KL (nats/token) from the original model, calibration data
  double seconds = 0;
  // The step at which the loss became non-finite (0: none); tuning stopped there.
  int diverged_at = 0;
  // Tuning diverged or ended no better than it started (kl_after >= kl_before): the model was
  // given back as it was before tuning, and kl_after is what the tuned state measured.
  bool reverted = false;
};

struct CompressOptions {
  QuantizeOptions quant;
  // Globs over tensor names (LLaMA: layers.{i}.attention.wq ... feed_forward.w3, output). A tensor
  // is compressed when it matches an include and no exclude.
  std::vector<std::string> include = {"layers.*"}, exclude;
  double target_bpw = 0;                    // > 0: mixed precision chosen per layer from sensitivity
  std::vector<int> candidate_bits = {2, 3, 4, 8};
  int64_t sample_rows = 512;                // calibration rows kept per layer for output errors / AWQ
  // LLaMA + AWQ: one scale per input group, folded into the RMSNorm weights / the producing layer's
  // rows (o_proj's only without GQA) instead of stored with each layer.
  bool fold_awq = true;
  // Collect each input group's statistics after the groups before it in the layer are compressed
  // (GPTQ's "true sequential"; not with folded AWQ, whose scales are searched on the float layer).
  // On stories260K: 4-bit GPTQ 4.4301 -> 4.4184, 3-bit 6.1407 -> 6.2448 (docs/compress.md).
  bool true_sequential = false;
  TuneOptions tune;
};

struct LayerReport {
  std::string name, format, method;
  int64_t rows = 0, cols = 0;
  double bits_per_weight = 0, weight_rel_err = 0, output_rel_err = 0, seconds = 0;
};

struct CompressResult {
  LlamaSource model;                  // dense tensors + compressed layers
  std::vector<LayerReport> layers;  // as compressed, before tuning
  TuneReport tune;
  double seconds = 0;
};

using CompressProgress = std::function<void(const std::string& what, int done, int total)>;

bool name_selected(const std::string& name, const CompressOptions& o);

CompressResult compress_llama(const LlamaSource& src, const std::vector<std::vector<int>>& calib, const CompressOptions& o,
                              const CompressProgress& progress = nullptr);
// Tunes the scales of student's compressed layers (every name in student.quantized; f32 layers
// stay as they are) against teacher, an f32 model of the same config. Throws tz::Error on
// mismatched models or empty calibration data.
TuneReport tune_quantized(const LlamaSource& teacher, LlamaSource& student, const std::vector<std::vector<int>>& calib,
                          const TuneOptions& o, const CompressProgress& progress = nullptr);
CompressResult compress_tensors(const LlamaSource& src, const io::SafetensorsFile* activations, const CompressOptions& o,
                                const CompressProgress& progress = nullptr);

}  // namespace tz
