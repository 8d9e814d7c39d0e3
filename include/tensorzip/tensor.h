// Tensor: shape, strides, dtype and a reference-counted byte buffer that is either owned
// (64-byte aligned), borrowed (a non-owning view of caller memory), or a memory-mapped file region
// kept alive by the tensor. Copying a Tensor shares the buffer (like a view); clone() deep-copies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensorzip/dtype.h"

namespace tz {

using Shape = std::vector<int64_t>;
std::string shape_to_string(const Shape& s);   // "[4096, 4096]"
int64_t shape_numel(const Shape& s);           // throws on negative dims or int64 overflow

// 64-byte aligned allocation (cache line and AVX-512 register width).
constexpr size_t kAlignment = 64;
std::shared_ptr<void> aligned_alloc_shared(size_t bytes);

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(DType dtype, Shape shape);                 // owning, uninitialised
  static Tensor zeros(DType dtype, Shape shape);                 // owning, zero-filled
  static Tensor view(DType dtype, Shape shape, void* data);      // non-owning, contiguous
  static Tensor view_strided(DType dtype, Shape shape, Shape strides, void* data);
  // A tensor whose bytes live in `keepalive`'s memory (e.g. a mapped file), shared ownership.
  static Tensor borrowed(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keepalive);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }   // in elements; empty for packed dtypes
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const;               // bytes spanned by the contiguous layout
  bool is_contiguous() const;
  bool owns_data() const { return owner_ != nullptr && owning_; }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <class T> T* data() { return static_cast<T*>(data_); }
  template <class T> const T* data() const { return static_cast<const T*>(data_); }

  Tensor reshape(Shape shape) const;   // contiguous only; shares the buffer
  Tensor select(int64_t index) const;  // index along dim 0; shares the buffer
  Tensor clone() const;                // deep, contiguous, owning copy
  Tensor to(DType dtype) const;        // converting copy between F32, F16, BF16 (and same type)

 private:
  DType dtype_ = DType::F32;
  Shape shape_, strides_;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  bool owning_ = false;
};

}  // namespace tz
