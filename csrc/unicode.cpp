#include "unicode.hpp"

// Definitions of the tables declared extern in unicode.hpp (namespace inside).
#include "unicode_tables.inc"

namespace instructfast::unicode {

char32_t decode_prev(const uint8_t* s, size_t& i) {
  // Walk back over at most three continuation bytes, then decode forward; if that
  // does not land exactly on i the last byte was not part of a valid sequence.
  const size_t end = i;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && is_continuation(s[start])) --start;
  size_t j = start;
  const char32_t cp = decode(s, end, j);
  if (j == end) {
    i = start;
    return cp;
  }
  i = end - 1;
  return s[i] < 0x80 ? char32_t(s[i]) : kInvalid;
}

size_t count_code_points(const uint8_t* s, size_t n) {
  // Every code point has exactly one non-continuation byte; this loop vectorises.
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += (s[i] & 0xC0) != 0x80;
  return count;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

bool is_final_sigma(const uint8_t* s, size_t n, size_t begin, size_t end) {
  size_t j = begin;
  char32_t c = 0;
  bool found = false;
  while (j > 0) {
    c = decode_prev(s, j);
    if (!is_case_ignorable(c)) {
      found = true;
      break;
    }
  }
  if (!found || !is_cased(c)) return false;
  j = end;
  while (j < n) {
    c = decode(s, n, j);
    if (!is_case_ignorable(c)) return !is_cased(c);
  }
  return true;
}

std::string lower(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  std::string out;
  out.reserve(n + n / 4);
  size_t i = 0;
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      out.push_back(char(b >= 'A' && b <= 'Z' ? b + 32 : b));
      ++i;
      continue;
    }
    const size_t start = i;
    const char32_t cp = decode(s, n, i);
    if (cp == kCapitalSigma) {
      append_utf8(out, is_final_sigma(s, n, start, i) ? 0x3C2 : 0x3C3);
    } else if (const LowerMapping* m = lower_mapping(props(cp))) {
      out.append(reinterpret_cast<const char*>(m->utf8), m->n_utf8);
    } else {
      out.append(text.data() + start, i - start);
    }
  }
  return out;
}

const char* unicode_version() { return tables::kUnicodeVersion; }

}  // namespace instructfast::unicode
