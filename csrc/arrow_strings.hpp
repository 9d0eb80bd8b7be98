// Zero-copy read access to an Arrow string array exported through the Arrow C Data
// Interface (https://arrow.apache.org/docs/format/CDataInterface.html), without
// depending on Arrow C++. Supports utf8 ("u"), large_utf8 ("U") and utf8_view ("vu").
//
// The producer is not trusted: pyarrow validates the arrays it builds, but data arriving
// through the C data interface from other producers is not re-validated by anyone. The
// constructor checks everything the interface makes checkable before a byte is read
// (buffer counts and pointers, non-negative monotonic offsets, view lengths, buffer
// indices and view ranges against the variadic buffer sizes) and throws ArrowDataError
// otherwise. What the interface does not carry cannot be checked: the sizes of the
// validity, offsets and utf8 data buffers are implied by the offsets themselves.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

extern "C" {
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
// Layouts fixed by the Arrow C Data Interface specification.
struct ArrowSchema {
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;
  void (*release)(struct ArrowSchema*);
  void* private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;
  void (*release)(struct ArrowArray*);
  void* private_data;
};
#endif  // ARROW_C_DATA_INTERFACE
}

namespace instructfast {

// A malformed or unsupported Arrow array (the bindings raise instructfast.ArrowDataError,
// which is also a ValueError).
class ArrowDataError : public std::invalid_argument {
 public:
  explicit ArrowDataError(const std::string& message) : std::invalid_argument(message) {}
};

class ArrowStringArray {
 public:
  // Borrows schema and array (the caller keeps them alive and releases them).
  // Throws ArrowDataError for released structs, unsupported formats and malformed layouts.
  ArrowStringArray(const ArrowSchema* schema, const ArrowArray* array);

  int64_t size() const { return length_; }

  bool is_valid(int64_t i) const {
    if (validity_ == nullptr) return true;
    const int64_t bit = offset_ + i;
    return (validity_[bit >> 3] >> (bit & 7)) & 1;
  }

  // The UTF-8 bytes of row i (meaningful for valid rows only).
  std::string_view value(int64_t i) const {
    const int64_t j = offset_ + i;
    switch (kind_) {
      case Kind::kUtf8:
        return {data_ + offsets32_[j], size_t(offsets32_[j + 1] - offsets32_[j])};
      case Kind::kLargeUtf8:
        return {data_ + offsets64_[j], size_t(offsets64_[j + 1] - offsets64_[j])};
      case Kind::kUtf8View:
        break;
    }
    return view_value(j);
  }

 private:
  enum class Kind { kUtf8, kLargeUtf8, kUtf8View };

  std::string_view view_value(int64_t j) const {
    // 16-byte view: int32 length, then either the bytes inline (<= 12) or
    // a 4-byte prefix, int32 buffer index and int32 offset into that buffer
    // (all checked by the constructor).
    const uint8_t* v = views_ + 16 * j;
    int32_t len, buffer, offset;
    std::memcpy(&len, v, 4);
    if (len <= 12) return {reinterpret_cast<const char*>(v + 4), size_t(len)};
    std::memcpy(&buffer, v + 8, 4);
    std::memcpy(&offset, v + 12, 4);
    return {static_cast<const char*>(variadic_[buffer]) + offset, size_t(len)};
  }

  void validate_offsets32() const;
  void validate_offsets64() const;
  void validate_views() const;

  Kind kind_;
  int64_t length_ = 0;
  int64_t offset_ = 0;
  const uint8_t* validity_ = nullptr;
  const int32_t* offsets32_ = nullptr;
  const int64_t* offsets64_ = nullptr;
  const char* data_ = nullptr;
  const uint8_t* views_ = nullptr;
  const void* const* variadic_ = nullptr;
  const int64_t* variadic_sizes_ = nullptr;
  int64_t n_variadic_ = 0;
};

}  // namespace instructfast
