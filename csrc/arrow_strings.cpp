#include "arrow_strings.hpp"

#include <stdexcept>
#include <string>

namespace instructfast {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace

ArrowStringArray::ArrowStringArray(const ArrowSchema* schema, const ArrowArray* array) {
  require(schema != nullptr && schema->release != nullptr, "Arrow schema is null or already released");
  require(array != nullptr && array->release != nullptr, "Arrow array is null or already released");
  require(schema->format != nullptr, "Arrow schema has no format string");
  const std::string format = schema->format;
  require(array->length >= 0 && array->offset >= 0, "Arrow array has a negative length or offset");
  length_ = array->length;
  offset_ = array->offset;

  if (format == "u") {
    kind_ = Kind::kUtf8;
  } else if (format == "U") {
    kind_ = Kind::kLargeUtf8;
  } else if (format == "vu") {
    kind_ = Kind::kUtf8View;
  } else {
    throw std::invalid_argument("unsupported Arrow format '" + format +
                                "': expected a string array (utf8 'u', large_utf8 'U' or utf8_view 'vu')");
  }
  // utf8/large_utf8: validity, offsets, data; utf8_view: validity, views, data..., sizes.
  require(array->n_buffers >= 3 && array->buffers != nullptr,
          "Arrow array with format '" + format + "' has too few buffers (" + std::to_string(array->n_buffers) + ")");

  // A null count of zero lets producers omit the bitmap; -1 means "unknown".
  if (array->null_count != 0) validity_ = static_cast<const uint8_t*>(array->buffers[0]);

  if (length_ == 0) return;
  switch (kind_) {
    case Kind::kUtf8:
      offsets32_ = static_cast<const int32_t*>(array->buffers[1]);
      data_ = static_cast<const char*>(array->buffers[2]);
      require(offsets32_ != nullptr, "Arrow utf8 array has no offsets buffer");
      break;
    case Kind::kLargeUtf8:
      offsets64_ = static_cast<const int64_t*>(array->buffers[1]);
      data_ = static_cast<const char*>(array->buffers[2]);
      require(offsets64_ != nullptr, "Arrow large_utf8 array has no offsets buffer");
      break;
    case Kind::kUtf8View:
      views_ = static_cast<const uint8_t*>(array->buffers[1]);
      require(views_ != nullptr, "Arrow utf8_view array has no views buffer");
      variadic_ = array->buffers + 2;
      n_variadic_ = array->n_buffers - 3;
      break;
  }
  // An all-empty utf8 array may legitimately export a null data pointer.
  if (data_ == nullptr) data_ = "";
}

void ArrowStringArray::throw_bad_view(int64_t j, int32_t buffer) const {
  throw std::invalid_argument("Arrow utf8_view element " + std::to_string(j) + " refers to data buffer " +
                              std::to_string(buffer) + " but the array has " + std::to_string(n_variadic_));
}

}  // namespace instructfast
