// Objects several binding files share.
#pragma once
#include <memory>

#include "tensorzip/llama.h"
#include "tensorzip/mpgemm.h"
#include "tensorzip/quantize.h"

namespace tzpy {

struct Quantized {
  std::shared_ptr<const tz::CompressedLinear> c;
};

// Packed low-bit weights: the LUT layout alone, or (with AWQ scales, outliers, an input
// permutation or a low-rank branch) the whole layer.
struct LutW {
  std::shared_ptr<const tz::CompressedLinear> source;
  std::shared_ptr<tz::LutWeights> lut;
  std::shared_ptr<tz::Linear> linear;
  int64_t rows() const;
  int64_t cols() const;
};

}  // namespace tzpy
