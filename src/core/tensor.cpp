// Tensor storage, views and conversions.
#include "tensorzip/tensor.h"
#include "tensorzip/memory.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"

namespace tz {

std::string shape_to_string(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    require(d >= 0, "negative dimension in shape " + shape_to_string(s));
    require(d == 0 || n <= std::numeric_limits<int64_t>::max() / d,
            "shape " + shape_to_string(s) + " overflows int64");
    n *= d;
  }
  return n;
}

std::shared_ptr<void> aligned_alloc_shared(size_t bytes) {
  return std::shared_ptr<void>(alloc_large(bytes), [](void* q) { free_large(q); });  // >= 64-byte aligned
}

namespace {
Shape contiguous_strides(DType dt, const Shape& shape) {
  if (dtype_traits(dt).is_packed) return {};
  Shape st(shape.size());
  // Unsigned: a shape with a zero dimension may have a huge (meaningless) product of the others.
  uint64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = int64_t(s);
    s *= uint64_t(shape[i]);
  }
  return st;
}
}  // namespace

size_t Tensor::nbytes() const {
  const int64_t n = numel();
  if (dtype_traits(dtype_).is_packed) {
    // Packed codes are stored row by row (the last dimension padded to whole blocks).
    if (shape_.empty()) return dtype_bytes(dtype_, 1);
    const int64_t cols = shape_.back();
    return cols == 0 ? 0 : size_t(n / cols) * dtype_bytes(dtype_, size_t(cols));
  }
  return size_t(n) * dtype_size(dtype_);
}

bool Tensor::is_contiguous() const {
  return strides_.empty() ? true : strides_ == contiguous_strides(dtype_, shape_);
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(dtype, t.shape_);
  auto buf = aligned_alloc_shared(t.nbytes());
  t.data_ = buf.get();
  t.owner_ = std::move(buf);
  t.owning_ = true;
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(dtype, t.shape_);
  (void)t.numel();  // validates the shape
  t.data_ = data;
  return t;
}

Tensor Tensor::view_strided(DType dtype, Shape shape, Shape strides, void* data) {
  require(!dtype_traits(dtype).is_packed, "strided views of packed dtypes are not supported");
  require(strides.size() == shape.size(), "view: strides " + shape_to_string(strides) +
                                              " do not match shape " + shape_to_string(shape));
  Tensor t = view(dtype, std::move(shape), data);
  t.strides_ = std::move(strides);
  return t;
}

Tensor Tensor::borrowed(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keepalive) {
  Tensor t = view(dtype, std::move(shape), const_cast<void*>(data));
  t.owner_ = std::move(keepalive);
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  require(is_contiguous(), "reshape needs a contiguous tensor");
  require(shape_numel(shape) == numel(), "reshape " + shape_to_string(shape_) + " -> " +
                                             shape_to_string(shape) + ": element count differs");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(dtype_, t.shape_);
  return t;
}

Tensor Tensor::select(int64_t index) const {
  require(ndim() >= 1, "select on a 0-d tensor");
  require(index >= 0 && index < shape_[0], "select index " + std::to_string(index) +
                                               " out of range for shape " + shape_to_string(shape_));
  Tensor t = *this;
  t.shape_.erase(t.shape_.begin());
  if (dtype_traits(dtype_).is_packed) {
    t.strides_.clear();
    t.data_ = static_cast<char*>(data_) + size_t(index) * (nbytes() / size_t(shape_[0]));
  } else {
    t.data_ = static_cast<char*>(data_) + index * strides_[0] * int64_t(dtype_size(dtype_));
    t.strides_.erase(t.strides_.begin());
  }
  return t;
}

Tensor Tensor::clone() const {
  Tensor out = empty(dtype_, shape_);
  if (is_contiguous()) {
    std::memcpy(out.data_, data_, nbytes());
    return out;
  }
  // General strided copy, element by element (rare: views are mostly contiguous).
  const size_t es = dtype_size(dtype_);
  const int64_t n = numel();
  std::vector<int64_t> idx(shape_.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides_[d];
    std::memcpy(static_cast<char*>(out.data_) + i * es, static_cast<const char*>(data_) + off * int64_t(es), es);
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < shape_[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype_) return clone();
  const Tensor src = is_contiguous() ? *this : clone();
  const size_t n = size_t(numel());
  Tensor out = empty(target, shape_);
  const bool ok_src = dtype_ == DType::F32 || dtype_ == DType::F16 || dtype_ == DType::BF16;
  const bool ok_dst = target == DType::F32 || target == DType::F16 || target == DType::BF16;
  require(ok_src && ok_dst, std::string("conversion ") + dtype_name(dtype_) + " -> " +
                                dtype_name(target) + " is not supported");
  Tensor f32 = dtype_ == DType::F32 ? src : empty(DType::F32, shape_);
  if (dtype_ == DType::F16) f16_to_f32(src.data<uint16_t>(), f32.data<float>(), n);
  if (dtype_ == DType::BF16) bf16_to_f32(src.data<uint16_t>(), f32.data<float>(), n);
  if (target == DType::F32) return f32;
  if (target == DType::F16) f32_to_f16(f32.data<float>(), out.data<uint16_t>(), n);
  if (target == DType::BF16) f32_to_bf16(f32.data<float>(), out.data<uint16_t>(), n);
  return out;
}

}  // namespace tz
