// Reference quantized layout: plain LSB-first bit packing per row, per-group scales/zero points.
// Slow and obviously correct; the mpGEMM kernels repack from this layout.
#include "tensorzip/format.h"

#include <algorithm>
#include <cmath>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"

namespace tz {

std::string QuantFormat::spec() const {
  if (ternary) return group == 0 ? "t" : "tg" + std::to_string(group);
  return "q" + std::to_string(bits) + "g" + std::to_string(group) + (symmetric ? "" : "a");
}

std::string QuantFormat::to_string() const {
  std::string s = ternary ? "ternary" : "q" + std::to_string(bits);
  s += group == 0 ? " g-row" : " g" + std::to_string(group);
  if (!ternary) s += symmetric ? " sym" : " asym";
  s += scale_dtype == DType::F16 ? " f16-scales" : " f32-scales";
  return s;
}

void QuantFormat::validate(int64_t rows, int64_t cols) const {
  require(bits >= 1 && bits <= 8, "quant format: bits must be 1..8, got " + std::to_string(bits));
  require(!ternary || bits == 2, "quant format: ternary stores 2 bits per value");
  require(!ternary || symmetric, "quant format: ternary is symmetric");
  require(group >= 0, "quant format: group must be >= 0 (0 = whole row)");
  require(scale_dtype == DType::F32 || scale_dtype == DType::F16,
          "quant format: scales must be F32 or F16");
  require(rows >= 0 && cols >= 0, "quant format: negative matrix shape");
}

int64_t QuantMatrix::groups_per_row() const {
  const int64_t g = fmt.group_size(cols);
  return g == 0 ? 0 : (cols + g - 1) / g;
}

size_t QuantMatrix::packed_row_bytes() const { return dtype_bytes(fmt.code_dtype(), size_t(cols)); }

QuantMatrix select_rows(const QuantMatrix& q, const std::vector<int64_t>& rows) {
  QuantMatrix r;
  r.fmt = q.fmt;
  r.rows = int64_t(rows.size());
  r.cols = q.cols;
  const size_t rb = q.packed_row_bytes(), ng = size_t(q.groups_per_row());
  r.codes.resize(rows.size() * rb);
  r.scales.resize(rows.size() * ng);
  if (!q.zeros.empty()) r.zeros.resize(rows.size() * ng);
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t s = rows[i];
    require(s >= 0 && s < q.rows, "select_rows: row " + std::to_string(s) + " of " + std::to_string(q.rows));
    std::copy_n(q.codes.data() + size_t(s) * rb, rb, r.codes.data() + i * rb);
    std::copy_n(q.scales.data() + size_t(s) * ng, ng, r.scales.data() + i * ng);
    if (!q.zeros.empty()) std::copy_n(q.zeros.data() + size_t(s) * ng, ng, r.zeros.data() + i * ng);
  }
  return r;
}

void pack_codes_ref(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  const size_t nbytes = dtype_bytes(packed_dtype(bits), size_t(n));
  std::fill(out, out + nbytes, uint8_t(0));
  const unsigned mask = (1u << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    if ((codes[i] & ~mask) != 0)  // (not require(): its message would be built for every value)
      throw Error("pack_codes: code " + std::to_string(codes[i]) + " does not fit in " + std::to_string(bits) + " bits");
    const int64_t bit = i * bits;
    const unsigned v = unsigned(codes[i]) << (bit % 8);
    out[bit / 8] |= uint8_t(v);
    if ((bit % 8) + bits > 8) out[bit / 8 + 1] |= uint8_t(v >> 8);
  }
}

void unpack_codes_ref(const uint8_t* packed, int64_t n, int bits, uint8_t* out) {
  const unsigned mask = (1u << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    unsigned v = packed[bit / 8] >> (bit % 8);
    if ((bit % 8) + bits > 8) v |= unsigned(packed[bit / 8 + 1]) << (8 - bit % 8);
    out[i] = uint8_t(v & mask);
  }
}

namespace {

float round_scale(float s, DType dt) {
  if (dt != DType::F16) return s;
  // Keep the scale exactly representable in f16 so a stored file reproduces the same numbers.
  return f16_to_f32_scalar(f32_to_f16_scalar(s));
}

}  // namespace

QuantMatrix quantize_rtn_ref(const float* w, int64_t rows, int64_t cols, const QuantFormat& fmt) {
  fmt.validate(rows, cols);
  QuantMatrix q;
  q.fmt = fmt;
  q.rows = rows;
  q.cols = cols;
  const int64_t g = fmt.group_size(cols), ng = q.groups_per_row();
  const int qmax = (1 << fmt.bits) - 1;
  q.codes.assign(size_t(rows) * q.packed_row_bytes(), 0);
  q.scales.assign(size_t(rows * ng), 0.f);
  if (!fmt.symmetric) q.zeros.assign(size_t(rows * ng), 0.f);
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t gi = 0; gi < ng; ++gi) {
      const int64_t b = gi * g, e = std::min(cols, b + g);
      float amax = 0.f, amean = 0.f, lo = row[b], hi = row[b];
      for (int64_t i = b; i < e; ++i) {
        if (!std::isfinite(row[i]))
          throw Error("quantize: non-finite weight at row " + std::to_string(r) + ", column " + std::to_string(i));
        amax = std::max(amax, std::fabs(row[i]));
        amean += std::fabs(row[i]);
        lo = std::min(lo, row[i]);
        hi = std::max(hi, row[i]);
      }
      amean /= float(e - b);
      float& scale = q.scales[size_t(r * ng + gi)];
      if (fmt.ternary) {
        scale = round_scale(amean, fmt.scale_dtype);
        for (int64_t i = b; i < e; ++i) {
          const float t = scale > 0 ? std::nearbyint(row[i] / scale) : 0.f;
          codes[size_t(i)] = uint8_t(std::clamp(t, -1.f, 1.f) + 1.f);
        }
      } else if (fmt.symmetric) {
        const float half = 0.5f * float(qmax);  // bipolar levels: q - half in {-half .. +half}
        scale = round_scale(fmt.bits == 1 ? 2.f * amean : amax / half, fmt.scale_dtype);
        for (int64_t i = b; i < e; ++i) {
          const float t = scale > 0 ? std::nearbyint(row[i] / scale + half) : half;
          codes[size_t(i)] = uint8_t(std::clamp(t, 0.f, float(qmax)));
        }
      } else {
        scale = round_scale((hi - lo) / float(qmax), fmt.scale_dtype);
        const float zero = scale > 0 ? std::clamp(std::nearbyint(-lo / scale), 0.f, float(qmax)) : 0.f;
        q.zeros[size_t(r * ng + gi)] = zero;
        for (int64_t i = b; i < e; ++i) {
          const float t = scale > 0 ? std::nearbyint(row[i] / scale) + zero : zero;
          codes[size_t(i)] = uint8_t(std::clamp(t, 0.f, float(qmax)));
        }
      }
    }
    pack_codes_ref(codes.data(), cols, fmt.bits, q.codes.data() + size_t(r) * q.packed_row_bytes());
  }
  return q;
}

void dequantize_ref(const QuantMatrix& q, float* out) {
  const int64_t g = q.fmt.group_size(q.cols), ng = q.groups_per_row();
  const float half = 0.5f * float((1 << q.fmt.bits) - 1);
  std::vector<uint8_t> codes(static_cast<size_t>(q.cols));
  for (int64_t r = 0; r < q.rows; ++r) {
    unpack_codes_ref(q.codes.data() + size_t(r) * q.packed_row_bytes(), q.cols, q.fmt.bits, codes.data());
    for (int64_t i = 0; i < q.cols; ++i) {
      const int64_t gi = i / g;
      const float s = q.scales[size_t(r * ng + gi)];
      float v;
      if (q.fmt.ternary) v = float(int(codes[size_t(i)]) - 1);
      else if (q.fmt.symmetric) v = float(codes[size_t(i)]) - half;
      else v = float(codes[size_t(i)]) - q.zeros[size_t(r * ng + gi)];
      out[r * q.cols + i] = s * v;
    }
  }
}

}  // namespace tz
