// Int8 prefill path of the low-bit GEMM on AVX-VNNI (VEX VPDPBUSD on ymm; Intel client cores,
// AMD Zen 5): int8_avx2.inc with the VNNI dot product.
#include <algorithm>
#include <cmath>

#define TZ_INT8_AVXVNNI 1
#include "kernels/mpgemm/int8_avx2.inc"
