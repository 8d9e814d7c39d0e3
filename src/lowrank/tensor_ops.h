// Tensor helpers shared by the decompositions and the factored operators (row-major tensors).
#pragma once
#include <cstdint>
#include <vector>

#include "tensorzip/decompose.h"

namespace tz::lowrank {

// out mode j is a's mode perm[j].
template <class T>
DenseTensor<T> permute(const DenseTensor<T>& a, const std::vector<int>& perm);
// a ×_k M with M (J x n_k), or with Mᵀ when `transposed` (M then n_k x J).
template <class T>
DenseTensor<T> mode_product(const DenseTensor<T>& a, int k, const T* mat, int64_t j, bool transposed);

}  // namespace tz::lowrank
