// The linear layers of a LLaMA block, by their canonical names (LlamaSource, llama.h), in the order
// the compressor visits them.
#pragma once

namespace tz {

inline constexpr const char* kLinears[] = {"attention.wq", "attention.wk", "attention.wv", "attention.wo",
                                           "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"};

}  // namespace tz
