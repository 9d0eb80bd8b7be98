#include "arrow_strings.hpp"

#include <limits>
#include <string>

namespace instructfast {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw ArrowDataError(message);
}

std::string row_label(int64_t j, int64_t offset) {
  // Rows are named as the caller sees them (after the array's own offset).
  return "element " + std::to_string(j - offset);
}

}  // namespace

ArrowStringArray::ArrowStringArray(const ArrowSchema* schema, const ArrowArray* array) {
  require(schema != nullptr && schema->release != nullptr, "Arrow schema is null or already released");
  require(array != nullptr && array->release != nullptr, "Arrow array is null or already released");
  require(schema->format != nullptr, "Arrow schema has no format string");
  const std::string format = schema->format;

  if (format == "u") {
    kind_ = Kind::kUtf8;
  } else if (format == "U") {
    kind_ = Kind::kLargeUtf8;
  } else if (format == "vu") {
    kind_ = Kind::kUtf8View;
  } else {
    throw ArrowDataError("unsupported Arrow format '" + format +
                         "': expected a string array (utf8 'u', large_utf8 'U' or utf8_view 'vu')");
  }
  const std::string what = "Arrow " + std::string(kind_ == Kind::kUtf8        ? "utf8"
                                                  : kind_ == Kind::kLargeUtf8 ? "large_utf8"
                                                                              : "utf8_view") +
                           " array";
  require(array->length >= 0 && array->offset >= 0,
          what + " has a negative length (" + std::to_string(array->length) + ") or offset (" +
              std::to_string(array->offset) + ")");
  require(array->length <= std::numeric_limits<int64_t>::max() - array->offset - 1,
          what + ": offset + length overflows");
  require(array->null_count >= -1 && array->null_count <= array->length,
          what + " has a null count of " + std::to_string(array->null_count) + " for " +
              std::to_string(array->length) + " elements");
  require(array->n_children == 0 && array->dictionary == nullptr, what + " has children or a dictionary");
  length_ = array->length;
  offset_ = array->offset;

  // utf8/large_utf8: validity, offsets, data; utf8_view: validity, views, data..., sizes.
  if (kind_ == Kind::kUtf8View) {
    require(array->n_buffers >= 3, what + " has " + std::to_string(array->n_buffers) +
                                       " buffers; expected validity, views, data buffers and their sizes");
  } else {
    require(array->n_buffers == 3, what + " has " + std::to_string(array->n_buffers) +
                                       " buffers; expected 3 (validity, offsets, data)");
  }
  require(array->buffers != nullptr, what + " has no buffer list");

  // A null count of zero lets producers omit the bitmap; -1 means "unknown", and an
  // unknown count without a bitmap means no nulls.
  if (array->null_count != 0) {
    validity_ = static_cast<const uint8_t*>(array->buffers[0]);
    require(validity_ != nullptr || array->null_count == -1,
            what + " has " + std::to_string(array->null_count) + " nulls but no validity bitmap");
  }

  switch (kind_) {
    case Kind::kUtf8:
      offsets32_ = static_cast<const int32_t*>(array->buffers[1]);
      data_ = static_cast<const char*>(array->buffers[2]);
      break;
    case Kind::kLargeUtf8:
      offsets64_ = static_cast<const int64_t*>(array->buffers[1]);
      data_ = static_cast<const char*>(array->buffers[2]);
      break;
    case Kind::kUtf8View:
      views_ = static_cast<const uint8_t*>(array->buffers[1]);
      variadic_ = array->buffers + 2;
      n_variadic_ = array->n_buffers - 3;
      variadic_sizes_ = static_cast<const int64_t*>(array->buffers[array->n_buffers - 1]);
      require(n_variadic_ == 0 || variadic_sizes_ != nullptr, what + " has data buffers but no buffer sizes");
      break;
  }
  if (length_ == 0) {
    if (data_ == nullptr) data_ = "";
    return;
  }
  switch (kind_) {
    case Kind::kUtf8:
      require(offsets32_ != nullptr, what + " has no offsets buffer");
      validate_offsets32();
      break;
    case Kind::kLargeUtf8:
      require(offsets64_ != nullptr, what + " has no offsets buffer");
      validate_offsets64();
      break;
    case Kind::kUtf8View:
      require(views_ != nullptr, what + " has no views buffer");
      validate_views();
      break;
  }
  // An all-empty utf8 array may legitimately export a null data pointer (checked above:
  // a non-empty range needs data).
  if (data_ == nullptr) data_ = "";
}

namespace {

// Offsets of rows [offset, offset + length]: the first non-negative, each >= the one before.
template <typename Offset>
void check_offsets(const Offset* offsets, int64_t offset, int64_t length, const char* data,
                   const std::string& what) {
  const int64_t end = offset + length;
  require(offsets[offset] >= 0, what + " has a negative first offset (" + std::to_string(offsets[offset]) + ")");
  for (int64_t j = offset; j < end; ++j) {
    if (offsets[j + 1] < offsets[j]) {
      throw ArrowDataError(what + ": " + row_label(j, offset) + " ends before it starts (offsets " +
                           std::to_string(offsets[j]) + " then " + std::to_string(offsets[j + 1]) + ")");
    }
  }
  require(data != nullptr || offsets[end] == offsets[offset], what + " holds bytes but has no data buffer");
}

}  // namespace

void ArrowStringArray::validate_offsets32() const {
  check_offsets(offsets32_, offset_, length_, data_, "Arrow utf8 array");
}

void ArrowStringArray::validate_offsets64() const {
  check_offsets(offsets64_, offset_, length_, data_, "Arrow large_utf8 array");
}

void ArrowStringArray::validate_views() const {
  const std::string what = "Arrow utf8_view array";
  for (int64_t k = 0; k < length_; ++k) {
    if (!is_valid(k)) continue;  // a null element's view is never read
    const int64_t j = offset_ + k;
    const uint8_t* v = views_ + 16 * j;
    int32_t len, buffer, offset;
    std::memcpy(&len, v, 4);
    if (len < 0) {
      throw ArrowDataError(what + ": " + row_label(j, offset_) + " has a negative length (" + std::to_string(len) +
                           ")");
    }
    if (len <= 12) continue;  // inline
    std::memcpy(&buffer, v + 8, 4);
    std::memcpy(&offset, v + 12, 4);
    if (buffer < 0 || buffer >= n_variadic_) {
      throw ArrowDataError(what + ": " + row_label(j, offset_) + " refers to data buffer " + std::to_string(buffer) +
                           " but the array has " + std::to_string(n_variadic_));
    }
    const int64_t size = variadic_sizes_[buffer];
    if (offset < 0 || int64_t(offset) + int64_t(len) > size) {
      throw ArrowDataError(what + ": " + row_label(j, offset_) + " spans bytes [" + std::to_string(offset) + ", " +
                           std::to_string(int64_t(offset) + int64_t(len)) + ") of data buffer " +
                           std::to_string(buffer) + ", which holds " + std::to_string(size) + " bytes");
    }
    if (variadic_[buffer] == nullptr) {
      throw ArrowDataError(what + ": data buffer " + std::to_string(buffer) + " is null");
    }
  }
}

}  // namespace instructfast
