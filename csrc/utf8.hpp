// UTF-8 validation and repair, with CPython's semantics so the pure-Python twin
// (bytes.decode) agrees byte for byte.
//
// Valid UTF-8 is what str.encode("utf-8") can produce: no overlong forms, no encoded
// surrogates, nothing above U+10FFFF (the decoder in unicode.hpp). An error is reported
// at the first byte of the first invalid sequence, as UnicodeDecodeError.start.
// Repair replaces each maximal invalid subpart (the Unicode "substitution of maximal
// subparts" practice, which bytes.decode(errors="replace") follows) by U+FFFD, except that
// an encoded surrogate (ED A0..BF 80..BF: what a lone "\ud800" JSON escape becomes when
// carried as bytes) is one unit and becomes one U+FFFD rather than three.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "arrow_strings.hpp"

namespace instructfast::utf8 {

// Offset of the first byte of the first invalid sequence of s[0, n), or -1 when valid.
int64_t first_invalid(const uint8_t* s, size_t n);

// `text` with every invalid sequence replaced by U+FFFD (see above); valid text unchanged.
std::string replace_invalid(std::string_view text);

// first_invalid() of every element of `rows` into out[0, rows.size()) (-1 for valid and
// null elements), spread over `threads` threads (<= 0: all hardware threads). Returns
// the number of invalid elements.
int64_t check_array(const ArrowStringArray& rows, int64_t* out, int threads);

}  // namespace instructfast::utf8
