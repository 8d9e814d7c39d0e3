// The rotary-embedding table every LLaMA pass uses (LlamaSession, LlamaGrad): one definition, so
// the two passes rotate by exactly the same angles.
#pragma once
#include <vector>

#include "tensorzip/llama.h"

namespace tz {

// cos / sin [pos][head_size / 2] for positions 0..max_seq-1; pair j turns by
// pos·θ^(−2j/head)·rope_freq_scale / factors[j] (factors: Llama-3.1's rope_freqs, or empty for all ones).
void rope_table(const LlamaConfig& c, int max_seq, std::vector<float>& cos, std::vector<float>& sin,
                const std::vector<float>& factors = {});

}  // namespace tz
