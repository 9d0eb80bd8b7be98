// One JSON string literal decoded straight from the bytes of a record, for records too long to
// hand to a general JSON parser (pyarrow's holds about four times a record while it parses).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace instructfast::json {

class JsonSyntaxError : public std::invalid_argument {
 public:
  JsonSyntaxError(const std::string& message, size_t at)
      : std::invalid_argument(message + " at byte " + std::to_string(at)), at(at) {}
  size_t at;  // byte offset of the problem
};

// End (one past the closing quote) of the string literal whose opening quote is s[start].
// Throws JsonSyntaxError when it does not close.
size_t string_end(std::string_view s, size_t start);

// Decodes the literal s[start, end) (quotes included) into out, which must hold end - start bytes
// (decoding never grows text); returns the decoded length. Escapes as JSON defines them; a lone
// surrogate escape (\ud800) becomes the three bytes it would encode to (invalid UTF-8 that the
// scorer's text check then reports or repairs); raw bytes are copied as they are. Throws
// JsonSyntaxError on a bad escape or a raw control character.
size_t decode_string(std::string_view s, size_t start, size_t end, char* out);

}  // namespace instructfast::json
