#include "jsonstr.hpp"

#include <cstring>

namespace instructfast::json {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The four hex digits at s[i, i + 4) as a code unit, or -1.
long hex4(std::string_view s, size_t i, size_t end) {
  if (i + 4 > end) return -1;
  long v = 0;
  for (size_t k = 0; k < 4; ++k) {
    const int h = hex_value(s[i + k]);
    if (h < 0) return -1;
    v = (v << 4) | h;
  }
  return v;
}

// UTF-8 of cp (surrogates too: their 3-byte, invalid, encodings) at out; returns its length.
size_t put_utf8(char32_t cp, char* out) {
  if (cp < 0x80) {
    out[0] = char(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = char(0xC0 | (cp >> 6));
    out[1] = char(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = char(0xE0 | (cp >> 12));
    out[1] = char(0x80 | ((cp >> 6) & 0x3F));
    out[2] = char(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = char(0xF0 | (cp >> 18));
  out[1] = char(0x80 | ((cp >> 12) & 0x3F));
  out[2] = char(0x80 | ((cp >> 6) & 0x3F));
  out[3] = char(0x80 | (cp & 0x3F));
  return 4;
}

}  // namespace

size_t string_end(std::string_view s, size_t start) {
  if (start >= s.size() || s[start] != '"') throw JsonSyntaxError("expected a string", start);
  size_t i = start + 1;
  while (true) {
    const void* q = std::memchr(s.data() + i, '"', s.size() - i);
    if (q == nullptr) throw JsonSyntaxError("unterminated string", start);
    size_t j = size_t(static_cast<const char*>(q) - s.data());
    size_t backslashes = 0;  // the quote ends the string unless an odd run of backslashes escapes it
    while (j - backslashes > start + 1 && s[j - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return j + 1;
    i = j + 1;
  }
}

size_t decode_string(std::string_view s, size_t start, size_t end, char* out) {
  size_t w = 0;
  size_t i = start + 1;
  const size_t stop = end - 1;  // the closing quote
  while (i < stop) {
    // Copy the run up to the next backslash (control characters are not allowed raw).
    const void* bs = std::memchr(s.data() + i, '\\', stop - i);
    const size_t run_end = bs ? size_t(static_cast<const char*>(bs) - s.data()) : stop;
    for (size_t k = i; k < run_end; ++k) {
      if (static_cast<unsigned char>(s[k]) < 0x20) throw JsonSyntaxError("control character in a string", k);
    }
    std::memcpy(out + w, s.data() + i, run_end - i);
    w += run_end - i;
    i = run_end;
    if (i >= stop) break;
    if (i + 1 >= stop) throw JsonSyntaxError("unfinished escape", i);
    const char e = s[i + 1];
    switch (e) {
      case '"': out[w++] = '"'; i += 2; continue;
      case '\\': out[w++] = '\\'; i += 2; continue;
      case '/': out[w++] = '/'; i += 2; continue;
      case 'b': out[w++] = '\b'; i += 2; continue;
      case 'f': out[w++] = '\f'; i += 2; continue;
      case 'n': out[w++] = '\n'; i += 2; continue;
      case 'r': out[w++] = '\r'; i += 2; continue;
      case 't': out[w++] = '\t'; i += 2; continue;
      case 'u': break;
      default: throw JsonSyntaxError("invalid escape", i);
    }
    const long hi = hex4(s, i + 2, stop);
    if (hi < 0) throw JsonSyntaxError("invalid \\u escape", i);
    if (hi >= 0xD800 && hi <= 0xDBFF && i + 12 <= stop && s[i + 6] == '\\' && s[i + 7] == 'u') {
      const long lo = hex4(s, i + 8, stop);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {  // a surrogate pair: one astral character
        w += put_utf8(char32_t(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)), out + w);
        i += 12;
        continue;
      }
    }
    w += put_utf8(char32_t(hi), out + w);
    i += 6;
  }
  return w;
}

}  // namespace instructfast::json
