// Scalar references of the low-bit family: the dequantize + double-accumulation oracle, and scalar
// twins of the LUT kernel, its table builder and the dequant kernel (same arithmetic, one lane).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/mpgemm/mpgemm.h"
#include "tensorzip/convert.h"

namespace tz {

void mpgemm_ref(const QuantMatrix& q, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  std::vector<float> w(size_t(q.rows * q.cols));
  dequantize_ref(q, w.data());
  // Y (n,m) = X (n,k) @ Ŵ (m,k)^T
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < q.rows; ++r) {
      double acc = 0;
      for (int64_t k = 0; k < q.cols; ++k) acc += double(x[i * ldx + k]) * double(w[size_t(r * q.cols + k)]);
      y[i * ldy + r] = float(acc);
    }
}

namespace kernels {

void luttables_g4_f32__ref(const float* x, int64_t k, int64_t k_pad, int64_t scale_block, LutMode mode,
                     const float* ts, void* tab) {
  for (int64_t q = 0; q < k_pad / 4; ++q) {
    float a[4];
    for (int t = 0; t < 4; ++t) a[t] = 4 * q + t < k ? x[4 * q + t] : 0.f;
    const float inv = mode == LutMode::Fast ? 1.0f / ts[4 * q / scale_block] : 1.f;
    for (int idx = 0; idx < 16; ++idx) {
      float s = (idx & 1) ? a[0] : -a[0];
      for (int t = 1; t < 4; ++t) s = s + ((idx >> t & 1) ? a[t] : -a[t]);
      if (mode == LutMode::Exact) {
        static_cast<float*>(tab)[q * 16 + idx] = s;
      } else {
        const float v = std::nearbyint(s * inv);
        static_cast<int8_t*>(tab)[q * 16 + idx] = int8_t(v > 127.f ? 127.f : (v < -128.f ? -128.f : v));
      }
    }
  }
}

void lutgemm_qbg4_f32_f32__ref(const LutArgs& a) {
  const LutWeights& w = *a.w;
  const int P = w.planes(), sb = w.scale_bytes();
  const float half = lut_half(w.format());
  const bool zero_term = !w.format().symmetric || w.format().ternary;
  for (int64_t t = a.t0; t < a.t1; ++t) {
    const uint8_t* tile = w.tile(t);
    for (int rr = 0; rr < 16; ++rr) {
      const int64_t r = t * 16 + rr;
      if (r >= w.rows()) break;
      for (int n = 0; n < a.nb; ++n) {
        float yacc = 0.f;
        for (int64_t g = 0; g < w.groups(); ++g) {
          const uint8_t* blk = tile + w.group_offset(g);
          const int64_t nc = w.group_chunks(g), q0 = g * w.group_cols() / 4;
          float facc = 0.f;
          const int64_t cpb = lut_scale_block(w) / 32;  // chunks per table scale
          int32_t iacc = 0;
          float cacc = 0.f;
          for (int64_t c = 0; c < nc; ++c) {
            for (int p = 0; p < P; ++p) {
              const uint8_t* v = blk + (c * P + p) * 64;
              for (int j = 0; j < 4; ++j) {
                const int lo = v[4 * rr + j] & 15, hi = v[4 * rr + j] >> 4;
                const int64_t qlo = q0 + c * 8 + j, qhi = qlo + 4;
                if (a.mode == LutMode::Fast) {
                  const auto* tb = static_cast<const int8_t*>(a.cols[n].tab);
                  iacc += (int32_t(tb[qlo * 16 + lo]) + int32_t(tb[qhi * 16 + hi])) << p;
                } else {
                  const auto* tb = static_cast<const float*>(a.cols[n].tab);
                  cacc += float(1 << p) * (tb[qlo * 16 + lo] + tb[qhi * 16 + hi]);
                }
              }
            }
            if ((c + 1) % cpb == 0 || c == nc - 1) {
              if (a.mode == LutMode::Fast) facc = std::fma(float(iacc), a.cols[n].ts[(q0 / 8 + c) / cpb], facc);
              else facc += cacc;
              iacc = 0;
              cacc = 0.f;
            }
          }
          const uint8_t* sc = blk + nc * P * 64;
          const float ws = stored_scale(sc, rr, sb);
          yacc = std::fma(facc, ws * 0.5f, yacc);
          if (zero_term) {
            const float z = w.has_zeros() ? stored_scale(sc + 16 * sb, rr, sb) : 1.f;
            yacc = std::fma(ws * (half - z), a.cols[n].sa[g], yacc);
          }
        }
        a.y[n][r] = yacc;
      }
    }
  }
}

// Scalar twin of the AMX int8 path: same activation quantization, same integer sums.
void qgemm_qbg_i8_f32__ref(const LutWeights& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy) {
  const QuantMatrix q = w.unpack();
  const int64_t k = w.cols(), G = w.group_cols();
  const float center = float(1 << (w.planes() - 1)), zfixed = w.format().ternary ? 1.f : lut_half(w.format());
  std::vector<uint8_t> codes(static_cast<size_t>(k));
  std::vector<int> aq(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const float* a = x + i * ldx;
    float amax = 0.f;
    for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(a[j]));
    const float s = amax > 0.f ? amax / 127.f : 1.f, inv = 1.f / s;
    for (int64_t j = 0; j < k; ++j) aq[size_t(j)] = int(std::nearbyint(a[j] * inv));
    for (int64_t r = 0; r < w.rows(); ++r) {
      unpack_codes_ref(q.codes.data() + size_t(r) * q.packed_row_bytes(), k, q.fmt.bits, codes.data());
      float acc = 0.f;
      for (int64_t g = 0; g * G < k; ++g) {
        int32_t dot = 0, sum = 0;
        for (int64_t j = g * G; j < std::min(k, (g + 1) * G); ++j) {
          dot += (int32_t(codes[size_t(j)]) - int32_t(center)) * aq[size_t(j)];
          sum += aq[size_t(j)];
        }
        const int64_t qg = std::min(g, q.groups_per_row() - 1);
        const float ws = q.scales[size_t(r * q.groups_per_row() + qg)];
        const float z = w.has_zeros() ? q.zeros[size_t(r * q.groups_per_row() + qg)] : zfixed;
        acc += ws * s * float(dot) + ws * (center - z) * s * float(sum);
      }
      y[i * ldy + r] = acc;
    }
  }
}

void dqgemm_qb_f32_f32__ref(const DequantArgs& a) {
  const DequantWeights& w = *a.w;
  const int bits = w.format().bits, lb = bits == 1 ? 0 : bits < 4 ? 2 : 4;
  const float half = lut_half(w.format());
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = w.row(r);
    for (int n = 0; n < a.nb; ++n) {
      float yacc = 0.f;
      for (int64_t g = 0; g < w.groups(); ++g) {
        float acc = 0.f;  // Σ q·x over the group
        const int64_t b0 = g * w.group_cols() / 32, b1 = std::min(w.blocks(), (g + 1) * w.group_cols() / 32);
        for (int64_t b = b0; b < b1; ++b) {
          const uint8_t* blk = row + size_t(b) * w.block_bytes();
          for (int i = 0; i < 32; ++i) {
            const int64_t k = b * 32 + i;
            if (k >= w.cols()) break;
            int q = 0;
            if (lb == 2) q = (blk[i % 8] >> (2 * (i / 8))) & 3;
            if (lb == 4) q = (blk[i % 16] >> (4 * (i / 16))) & 15;
            for (int p = 0; p < bits - lb; ++p) {
              uint32_t plane;
              std::memcpy(&plane, blk + lb * 4 + 4 * p, 4);
              q |= int((plane >> i) & 1) << (lb + p);
            }
            acc += float(q) * a.x[n][k];
          }
        }
        const float s = w.scales(r)[g];
        const float z = w.format().ternary ? 1.f : w.format().symmetric ? half : w.zeros(r)[g];
        yacc += s * (acc - z * a.gsum[n][g]);
      }
      a.y[n][r] = yacc;
    }
  }
}

}  // namespace kernels
}  // namespace tz
