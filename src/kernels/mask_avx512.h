// Lane masks for AVX-512 loops over ragged ends. Include only from files compiled with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace tz::kernels {

// The first n of 16 lanes (n clamped to 0..16).
inline __mmask16 first16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }

}  // namespace tz::kernels
