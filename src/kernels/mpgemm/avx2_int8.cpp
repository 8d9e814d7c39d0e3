// Int8 prefill path of the low-bit GEMM on AVX2 (VPMADDUBSW + VPMADDWD): int8_avx2.inc.
#include <algorithm>
#include <cmath>

#include "kernels/mpgemm/int8_avx2.inc"
