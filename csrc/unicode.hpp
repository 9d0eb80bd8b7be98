// UTF-8 decoding/encoding and the parts of CPython's Unicode behaviour that MTLD
// tokenisation depends on: str.lower() (full mappings, Final_Sigma) and str.isspace().
// Tables are generated from the building interpreter (tools/gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace instructfast::unicode {

struct LowerMapping {
  uint8_t n_cp;      // number of code points in the lowercase form
  uint8_t n_utf8;    // its UTF-8 length in bytes
  char32_t cp[3];
  uint8_t utf8[12];
};

namespace tables {
extern const char kUnicodeVersion[];
extern const int kShift;
extern const int kMaxLowerUtf8Growth;
extern const uint8_t kStage1[];
extern const uint16_t kStage2[];
extern const LowerMapping kLowerMappings[];
}  // namespace tables

inline constexpr char32_t kMaxCodePoint = 0x10FFFF;
// Returned by the decoder for a byte that does not start a valid UTF-8 sequence.
// It has no properties and no lowercase mapping, so such bytes are kept verbatim.
inline constexpr char32_t kInvalid = 0xFFFFFFFF;
inline constexpr char32_t kCapitalSigma = 0x3A3;

enum : uint16_t { kSpace = 1, kCased = 2, kCaseIgnorable = 4 };
inline constexpr int kIndexShift = 3;

// Per-code-point property word: flags in the low bits, lowercase-mapping index above.
inline uint16_t props(char32_t cp) {
  if (cp > kMaxCodePoint) return 0;
  const int shift = tables::kShift;
  const uint32_t block = tables::kStage1[cp >> shift];
  return tables::kStage2[(block << shift) | (cp & ((1u << shift) - 1))];
}

inline bool is_space(char32_t cp) { return props(cp) & kSpace; }
inline bool is_cased(char32_t cp) { return props(cp) & kCased; }
inline bool is_case_ignorable(char32_t cp) { return props(cp) & kCaseIgnorable; }

// Lowercase mapping of cp, or nullptr when cp lowercases to itself. The Final_Sigma
// context of U+03A3 is not applied here (the table holds the non-final "σ").
inline const LowerMapping* lower_mapping(uint16_t p) {
  const uint16_t idx = p >> kIndexShift;
  return idx ? &tables::kLowerMappings[idx] : nullptr;
}

inline bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Decodes the code point starting at s[i] and advances i past it. Rejects overlong
// forms, surrogates and values above U+10FFFF (each bad lead byte -> kInvalid, i += 1).
inline char32_t decode(const uint8_t* s, size_t n, size_t& i) {
  const uint8_t b0 = s[i];
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (i + 1 < n && is_continuation(s[i + 1])) {
      char32_t cp = (char32_t(b0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
      i += 2;
      return cp;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (i + 2 < n && is_continuation(s[i + 1]) && is_continuation(s[i + 2])) {
      char32_t cp = (char32_t(b0 & 0x0F) << 12) | (char32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) {
        i += 3;
        return cp;
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (i + 3 < n && is_continuation(s[i + 1]) && is_continuation(s[i + 2]) && is_continuation(s[i + 3])) {
      char32_t cp = (char32_t(b0 & 0x07) << 18) | (char32_t(s[i + 1] & 0x3F) << 12) |
                    (char32_t(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
      if (cp >= 0x10000 && cp <= kMaxCodePoint) {
        i += 4;
        return cp;
      }
    }
  }
  ++i;
  return kInvalid;
}

// Decodes the code point ending just before s[i] and moves i to its first byte.
char32_t decode_prev(const uint8_t* s, size_t& i);

// Number of code points of valid UTF-8, i.e. len() of the Python string (for invalid
// input, which no Python string can produce, the number of non-continuation bytes).
size_t count_code_points(const uint8_t* s, size_t n);

void append_utf8(std::string& out, char32_t cp);

// CPython's handle_capital_sigma: is the U+03A3 occupying bytes [begin, end) of s in
// the Final_Sigma context, i.e. cased (ignorable)* Σ not followed by (ignorable)* cased?
bool is_final_sigma(const uint8_t* s, size_t n, size_t begin, size_t end);

// Exactly Python's str.lower() on UTF-8 text.
std::string lower(std::string_view text);

// unicodedata.unidata_version of the interpreter the tables were generated from.
const char* unicode_version();

}  // namespace instructfast::unicode
