// Packing between the reference QuantMatrix layout and the two kernel layouts (LUT bit planes,
// dequant byte-aligned codes). Both are exact: unpack(pack(q)) == q. Layouts: docs/formats.md.
#include <cmath>
#include <cstring>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/mpgemm.h"

namespace tz {
namespace {

std::vector<uint8_t> row_codes(const QuantMatrix& q, int64_t r) {
  std::vector<uint8_t> c(static_cast<size_t>(q.cols));
  unpack_codes_ref(q.codes.data() + size_t(r) * q.packed_row_bytes(), q.cols, q.fmt.bits, c.data());
  return c;
}

void check_quant_matrix(const QuantMatrix& q, const char* who) {
  q.fmt.validate(q.rows, q.cols);
  const std::string p = std::string(who) + ": ";
  require(q.codes.size() == size_t(q.rows) * q.packed_row_bytes(), p + "codes size does not match the shape");
  require(q.scales.size() == size_t(q.rows * q.groups_per_row()), p + "scales size does not match the shape");
  require(q.fmt.symmetric || q.zeros.size() == q.scales.size(), p + "asymmetric format without zero points");
  for (float s : q.scales) require(std::isfinite(s), p + "non-finite scale");
}

void store_scale(uint8_t* dst, float v, int bytes) {
  if (bytes == 4) {
    std::memcpy(dst, &v, 4);
  } else {
    const uint16_t h = f32_to_f16_scalar(v);
    std::memcpy(dst, &h, 2);
  }
}

float load_scale(const uint8_t* src, int bytes) {
  if (bytes == 4) {
    float v;
    std::memcpy(&v, src, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, src, 2);
  return f16_to_f32_scalar(h);
}

}  // namespace

LutWeights LutWeights::pack(const QuantMatrix& q) {
  check_quant_matrix(q, "LUT pack");
  LutWeights w;
  w.fmt_ = q.fmt;
  w.rows_ = q.rows;
  w.cols_ = q.cols;
  w.k_pad_ = (q.cols + 31) / 32 * 32;
  const int64_t g = q.fmt.group_size(q.cols);
  w.group_cols_ = (q.fmt.group == 0 || g >= q.cols) ? std::max<int64_t>(w.k_pad_, 32) : g;
  require(w.group_cols_ % 32 == 0, "LUT kernels need a group size that is a multiple of 32 (32, 64, 128, 256) or the whole row; got " +
                                       std::to_string(q.fmt.group));
  w.planes_ = q.fmt.bits;
  const int sb = w.scale_bytes();
  w.group_block_bytes_ = size_t(w.group_cols_ / 32) * size_t(w.planes_) * 64 + 16 * size_t(sb) * (w.has_zeros() ? 2 : 1);
  const int64_t ng = w.groups();
  w.tile_bytes_ = 0;
  for (int64_t gi = 0; gi < ng; ++gi)
    w.tile_bytes_ += size_t(w.group_chunks(gi)) * size_t(w.planes_) * 64 + 16 * size_t(sb) * (w.has_zeros() ? 2 : 1);
  w.data_.assign(size_t(w.tiles()) * w.tile_bytes_, 0);

  const int64_t qng = q.groups_per_row();
  for (int64_t t = 0; t < w.tiles(); ++t)
    for (int64_t rr = 0; rr < 16; ++rr) {
      const int64_t r = t * 16 + rr;
      if (r >= q.rows) break;
      const auto codes = row_codes(q, r);
      const auto code_at = [&](int64_t k) { return k < q.cols ? codes[size_t(k)] : uint8_t(0); };
      uint8_t* tile = w.data_.data() + size_t(t) * w.tile_bytes_;
      for (int64_t gi = 0; gi < ng; ++gi) {
        uint8_t* blk = tile + w.group_offset(gi);
        const int64_t nc = w.group_chunks(gi);
        for (int64_t c = 0; c < nc; ++c) {
          const int64_t kb = gi * w.group_cols_ + c * 32;
          for (int p = 0; p < w.planes_; ++p) {
            uint8_t* v = blk + size_t((c * w.planes_ + p) * 64);
            for (int j = 0; j < 4; ++j) {
              uint8_t lo = 0, hi = 0;
              for (int b = 0; b < 4; ++b) {
                lo |= uint8_t(((code_at(kb + 4 * j + b) >> p) & 1) << b);
                hi |= uint8_t(((code_at(kb + 16 + 4 * j + b) >> p) & 1) << b);
              }
              v[4 * rr + j] = uint8_t(lo | (hi << 4));
            }
          }
        }
        uint8_t* sc = blk + size_t(nc * w.planes_ * 64);
        // Scale groups of the QuantMatrix and of the layout coincide (both multiples of 32 from 0).
        const int64_t qg = std::min(gi, qng - 1);
        store_scale(sc + rr * sb, q.scales[size_t(r * qng + qg)], sb);
        if (w.has_zeros()) store_scale(sc + 16 * sb + rr * sb, q.zeros[size_t(r * qng + qg)], sb);
      }
    }
  return w;
}

QuantMatrix LutWeights::unpack() const {
  QuantMatrix q;
  q.fmt = fmt_;
  q.rows = rows_;
  q.cols = cols_;
  const int64_t qng = q.groups_per_row(), ng = groups();
  q.codes.assign(size_t(rows_) * q.packed_row_bytes(), 0);
  q.scales.assign(size_t(rows_ * qng), 0.f);
  if (!fmt_.symmetric) q.zeros.assign(size_t(rows_ * qng), 0.f);
  const int sb = scale_bytes();
  std::vector<uint8_t> codes(static_cast<size_t>(cols_));
  for (int64_t r = 0; r < rows_; ++r) {
    const int64_t t = r / 16, rr = r % 16;
    std::fill(codes.begin(), codes.end(), 0);
    for (int64_t gi = 0; gi < ng; ++gi) {
      const uint8_t* blk = tile(t) + group_offset(gi);
      const int64_t nc = group_chunks(gi);
      for (int64_t c = 0; c < nc; ++c)
        for (int p = 0; p < planes_; ++p) {
          const uint8_t* v = blk + size_t((c * planes_ + p) * 64);
          for (int j = 0; j < 4; ++j)
            for (int b = 0; b < 4; ++b) {
              const int64_t k0 = gi * group_cols_ + c * 32 + 4 * j + b, k1 = k0 + 16;
              if (k0 < cols_) codes[size_t(k0)] |= uint8_t(((v[4 * rr + j] >> b) & 1) << p);
              if (k1 < cols_) codes[size_t(k1)] |= uint8_t(((v[4 * rr + j] >> (4 + b)) & 1) << p);
            }
        }
      if (gi < qng) {
        const uint8_t* sc = blk + size_t(nc * planes_ * 64);
        q.scales[size_t(r * qng + gi)] = load_scale(sc + rr * sb, sb);
        if (has_zeros()) q.zeros[size_t(r * qng + gi)] = load_scale(sc + 16 * sb + rr * sb, sb);
        else if (!fmt_.symmetric) q.zeros[size_t(r * qng + gi)] = 0.f;
      }
    }
    pack_codes_ref(codes.data(), cols_, fmt_.bits, q.codes.data() + size_t(r) * q.packed_row_bytes());
  }
  return q;
}

// ------------------------------------------------------------------ dequant layout
// Per row, per 32-value block: [low part][high planes]
//   bits 1:     1 plane (u32)
//   bits 2, 3:  8 bytes of 2-bit crumbs (byte i holds values i, i+8, i+16, i+24 at bits 0,2,4,6),
//               then (bits-2) planes
//   bits >= 4:  16 bytes of nibbles (byte i holds values i and i+16), then (bits-4) planes
// Plane p (u32): bit i = bit (low_bits + p) of value i.

namespace {
int low_bits(int bits) { return bits == 1 ? 0 : bits < 4 ? 2 : 4; }
}  // namespace

DequantWeights DequantWeights::pack(const QuantMatrix& q) {
  check_quant_matrix(q, "dequant pack");
  DequantWeights w;
  w.fmt_ = q.fmt;
  w.rows_ = q.rows;
  w.cols_ = q.cols;
  const int64_t g = q.fmt.group_size(q.cols);
  w.group_cols_ = g >= q.cols ? std::max<int64_t>((q.cols + 31) / 32 * 32, 32) : g;
  require(w.group_cols_ % 32 == 0, "dequant kernel needs a group size that is a multiple of 32 or the whole row; got " +
                                       std::to_string(q.fmt.group));
  const int bits = q.fmt.bits, lb = low_bits(bits);
  w.block_bytes_ = size_t(lb * 4 + (bits - lb) * 4);  // 32 values: lb*32/8 bytes + 4 bytes per plane
  w.codes_.assign(size_t(q.rows) * size_t(w.blocks()) * w.block_bytes_, 0);
  w.scales_ = q.scales;
  if (!q.fmt.symmetric) w.zeros_ = q.zeros;
  require(w.groups() == q.groups_per_row(), "dequant pack: group count mismatch");
  for (int64_t r = 0; r < q.rows; ++r) {
    const auto codes = row_codes(q, r);
    for (int64_t b = 0; b < w.blocks(); ++b) {
      uint8_t* blk = w.codes_.data() + (size_t(r) * size_t(w.blocks()) + size_t(b)) * w.block_bytes_;
      const auto code = [&](int i) { const int64_t k = b * 32 + i; return k < q.cols ? codes[size_t(k)] : uint8_t(0); };
      if (lb == 2)
        for (int i = 0; i < 8; ++i)
          for (int s = 0; s < 4; ++s) blk[i] |= uint8_t((code(i + 8 * s) & 3) << (2 * s));
      if (lb == 4)
        for (int i = 0; i < 16; ++i) blk[i] = uint8_t((code(i) & 15) | ((code(i + 16) & 15) << 4));
      for (int p = 0; p < bits - lb; ++p) {
        uint32_t plane = 0;
        for (int i = 0; i < 32; ++i) plane |= uint32_t((code(i) >> (lb + p)) & 1) << i;
        std::memcpy(blk + lb * 4 + 4 * p, &plane, 4);
      }
    }
  }
  return w;
}

}  // namespace tz
