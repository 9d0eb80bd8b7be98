#include "mtld.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "unicode.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace instructfast {

namespace {

// What the tokenizer does with an ASCII byte. Digits and '-' are deleted before
// punctuation becomes a space, so "well-known" -> "wellknown" and "a1b" -> "ab".
enum AsciiClass : uint8_t { kKeep, kDrop, kSplit, kNonAscii };

// Python's string.punctuation.
constexpr char kPunctuation[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

struct AsciiTable {
  uint8_t cls[256];
  uint8_t lower[256];
};

AsciiTable make_ascii_table() {
  AsciiTable t{};
  for (int b = 0; b < 256; ++b) {
    t.cls[b] = b >= 0x80 ? kNonAscii : kKeep;
    t.lower[b] = uint8_t(b);
    if (b < 0x80) {
      // Whitespace and case come from the generated tables (e.g. \x1c-\x1f are spaces).
      const uint16_t p = unicode::props(char32_t(b));
      if (p & unicode::kSpace) t.cls[b] = kSplit;
      if (const unicode::LowerMapping* m = unicode::lower_mapping(p)) t.lower[b] = m->utf8[0];
    }
  }
  for (const char* p = kPunctuation; *p; ++p) t.cls[uint8_t(*p)] = kSplit;
  for (int b = '0'; b <= '9'; ++b) t.cls[b] = kDrop;
  t.cls[uint8_t('-')] = kDrop;
  return t;
}

const AsciiTable kAscii = make_ascii_table();

constexpr char32_t kEnDash = 0x2013;
constexpr char32_t kEmDash = 0x2014;
constexpr int kInitialTableBits = 10;
// The hash reads whole 8-byte words, so the lowered buffer keeps this much slack.
constexpr size_t kSlack = 16;

// Unaligned 8-byte access in memory order (byte 0 is the lowest).
inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

// The first `len` bytes of a and b are equal; both may be read up to 8 bytes past
// len (buffer slack).
inline bool same_bytes(const uint8_t* a, const uint8_t* b, size_t len) {
  for (; len >= 8; a += 8, b += 8, len -= 8) {
    if (load_le64(a) != load_le64(b)) return false;
  }
  if (len == 0) return true;
  const uint64_t keep = ~0ull >> (64 - 8 * len);
  return ((load_le64(a) ^ load_le64(b)) & keep) == 0;
}

// Low `k` bytes (1 <= k <= 8) of the word at p.
inline uint64_t load_bytes(const uint8_t* p, size_t k) { return load_le64(p) & (~0ull >> (64 - 8 * k)); }

// Most tokens are at most 16 bytes: hash them with two masked word loads and no
// length-dependent branch (reads past the token stay inside the buffer's slack).
// The products' top bits depend on every input bit; the table indexes with those.
inline uint64_t hash_token(const uint8_t* p, size_t len) {
  const uint64_t a = load_bytes(p, len < 8 ? len : 8);
  const uint64_t b = len > 8 ? load_bytes(p + 8, len < 16 ? len - 8 : 8) : 0;
  uint64_t tail = 0;
  for (size_t off = 16; off < len; off += 8) {  // rare long tokens
    tail = (tail ^ load_bytes(p + off, len - off < 8 ? len - off : 8)) * 0x9E3779B97F4A7C15ull;
    tail ^= tail >> 29;
  }
  return ((a + 0x9E3779B97F4A7C15ull) * 0xbf58476d1ce4e5b9ull) ^ ((b + len) * 0x94d049bb133111ebull) ^ tail;
}

// Fast path: 16 ASCII bytes at a time. Writes the lowercased block to `out` and
// returns bit masks of its separator bytes (whitespace, punctuation) and deleted
// bytes (digits, '-'); false if the block holds a non-ASCII byte.
constexpr size_t kBlock = 16;

struct BlockMasks {
  uint32_t split;
  uint32_t drop;
};

#if defined(__SSE2__)
inline __m128i in_range(__m128i x, char lo, char hi) {  // bytes are < 0x80 here
  return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(char(lo - 1))), _mm_cmplt_epi8(x, _mm_set1_epi8(char(hi + 1))));
}

inline bool classify_block(const uint8_t* in, uint8_t* out, BlockMasks& m) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in));
  if (_mm_movemask_epi8(x) != 0) return false;
  // ASCII whitespace 09-0D, 1C-20 and string.punctuation except '-'.
  __m128i split = _mm_or_si128(in_range(x, 0x09, 0x0D), in_range(x, 0x1C, 0x2C));
  split = _mm_or_si128(split, in_range(x, 0x2E, 0x2F));
  split = _mm_or_si128(split, in_range(x, 0x3A, 0x40));
  split = _mm_or_si128(split, in_range(x, 0x5B, 0x60));
  split = _mm_or_si128(split, in_range(x, 0x7B, 0x7E));
  const __m128i drop = _mm_or_si128(in_range(x, '0', '9'), _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
  const __m128i upper = in_range(x, 'A', 'Z');
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_add_epi8(x, _mm_and_si128(upper, _mm_set1_epi8(0x20))));
  m.split = uint32_t(_mm_movemask_epi8(split));
  m.drop = uint32_t(_mm_movemask_epi8(drop));
  return true;
}
#else
inline bool classify_block(const uint8_t* in, uint8_t* out, BlockMasks& m) {
  uint32_t split = 0, drop = 0;
  for (size_t j = 0; j < kBlock; ++j) {
    const uint8_t b = in[j];
    if (b >= 0x80) return false;
    const uint8_t cls = kAscii.cls[b];
    split |= uint32_t(cls == kSplit) << j;
    drop |= uint32_t(cls == kDrop) << j;
    out[j] = kAscii.lower[b];
  }
  m.split = split;
  m.drop = drop;
  return true;
}
#endif

// The block classifier hard-codes the ASCII classes that kAscii derives from the
// generated tables; refuse to run if they ever disagree.
bool block_classifier_matches_table() {
  for (unsigned start = 0; start < 128; start += kBlock) {
    uint8_t in[kBlock], out[kBlock];
    for (unsigned j = 0; j < kBlock; ++j) in[j] = uint8_t(start + j);
    BlockMasks m{};
    if (!classify_block(in, out, m)) return false;
    for (unsigned j = 0; j < kBlock; ++j) {
      const uint8_t cls = kAscii.cls[start + j];
      if (((m.split >> j) & 1) != (cls == kSplit) || ((m.drop >> j) & 1) != (cls == kDrop) ||
          out[j] != kAscii.lower[start + j]) {
        return false;
      }
    }
  }
  return true;
}

// repr(x) of a Python float, so native and Python error messages read the same.
std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // shortest round-trip digits: [-]d[.ddd]e[+-]XX
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exponent = std::stoi(sci.substr(e + 1));
  const int decpt = exponent + 1;  // value = 0.DIGITS * 10**decpt
  const int nd = int(digits.size());
  std::string out;
  if (decpt <= -4 || decpt > 16) {  // CPython's float_repr_style 'short' rules
    out = digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  } else if (decpt <= 0) {
    out = "0." + std::string(size_t(-decpt), '0') + digits;
  } else if (decpt >= nd) {
    out = digits + std::string(size_t(decpt - nd), '0') + ".0";
  } else {
    out = digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
  }
  return sign + out;
}

}  // namespace

void check_threshold(double threshold) {
  if (!(threshold > 0.0 && threshold < 1.0)) {
    throw std::invalid_argument("`threshold` must be in (0, 1), got " + python_float_repr(threshold));
  }
}

MtldWorkspace::MtldWorkspace() : table_(size_t(1) << kInitialTableBits, Slot{0, 0, 0}), table_shift_(64 - kInitialTableBits) {
  static const bool consistent = block_classifier_matches_table();
  if (!consistent) throw std::logic_error("instructfast: ASCII block classifier disagrees with the Unicode tables");
}

void MtldWorkspace::tokenize(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  const size_t need = n * size_t(unicode::tables::kMaxLowerUtf8Growth) + kSlack;
  lowered_.ensure(need);
  // Tokens are separated, so there are at most (n + 1) / 2 of them: size ids_ once,
  // then store by index without capacity checks.
  const size_t max_tokens = (n + 1) / 2;
  ids_.ensure(max_tokens);
  first_invalid_ = -1;
  n_words_ = 0;
  n_unique_ = 0;
  spans_.clear();
  if (++text_stamp_ == 0) {  // wrapped: forget every slot once
    for (Slot& slot : table_) slot.stamp = 0;
    text_stamp_ = 1;
  }

  uint8_t* out = lowered_.data();
  size_t w = 0;        // write position in lowered_
  size_t begin = 0;    // start of the open token in lowered_
  bool dirty = false;  // the open token may still hold digits or '-' (fast path)
  size_t i = 0;
  while (i < n) {
    BlockMasks m;
    if (i + kBlock <= n && classify_block(s + i, out + w, m)) {
      // The block is copied lowercased as is; tokens are the runs between separators.
      const bool block_dirty = m.drop != 0;
      dirty |= block_dirty;
      for (uint32_t split = m.split; split; split &= split - 1) {
        const size_t end = w + size_t(__builtin_ctz(split));
        finish_token(begin, end, dirty);
        begin = end + 1;
        dirty = block_dirty;
      }
      w += kBlock;
      i += kBlock;
      continue;
    }
    const size_t stop = std::min(n, i + kBlock);
    while (i < stop) {  // code point at a time (non-ASCII, or the tail)
      const uint8_t b = s[i];
      const uint8_t cls = kAscii.cls[b];
      if (cls == kKeep) {
        out[w++] = kAscii.lower[b];
        ++i;
        continue;
      }
      if (cls == kSplit) {
        finish_token(begin, w, dirty);
        begin = w;
        dirty = false;
        ++i;
        continue;
      }
      if (cls == kDrop) {
        ++i;
        continue;
      }
      const size_t start = i;
      const char32_t cp = unicode::decode(s, n, i);
      if (cp == unicode::kInvalid && first_invalid_ < 0) first_invalid_ = int64_t(start);
      const uint16_t p = unicode::props(cp);
      if (p & unicode::kSpace) {
        finish_token(begin, w, dirty);
        begin = w;
        dirty = false;
      } else if (cp == kEnDash || cp == kEmDash) {
        // deleted
      } else if (cp == unicode::kCapitalSigma) {
        out[w++] = 0xCF;
        out[w++] = unicode::is_final_sigma(s, n, start, i) ? 0x82 : 0x83;  // ς : σ
      } else if (const unicode::LowerMapping* mapping = unicode::lower_mapping(p)) {
        std::memcpy(out + w, mapping->utf8, mapping->n_utf8);
        w += mapping->n_utf8;
      } else {
        std::memcpy(out + w, s + start, i - start);
        w += i - start;
      }
    }
  }
  finish_token(begin, w, dirty);
}

// Interns the token lowered_[begin, end), first deleting digits and '-' that the
// fast path copied when `dirty` (lowercase mappings never produce those bytes).
inline void MtldWorkspace::finish_token(size_t begin, size_t end, bool dirty) {
  uint8_t* buf = lowered_.data();
  if (dirty) {
    size_t k = begin;
    for (size_t j = begin; j < end; ++j) {
      const uint8_t c = buf[j];
      buf[k] = c;
      k += kAscii.cls[c] != kDrop;
    }
    end = k;
  }
  const size_t len = end - begin;
  if (len == 0) return;
  const uint8_t* tok = buf + begin;
  const uint64_t hash = hash_token(tok, len);
  const auto h = uint32_t(hash >> 32);  // tag checked before comparing bytes
  const size_t mask = table_.size() - 1;
  for (size_t slot = hash >> table_shift_;; slot = (slot + 1) & mask) {
    Slot& sl = table_[slot];
    if (sl.stamp != text_stamp_) {
      const auto id = uint32_t(n_unique_++);
      sl = Slot{text_stamp_, h, id};
      Span& sp = spans_.emplace_back();  // set fields in place: a Span temporary stalled on store forwarding
      sp.offset = begin;
      sp.length = len;
      ids_[n_words_++] = id;
      if (n_unique_ * 2 > table_.size()) grow_table();
      return;
    }
    if (sl.hash == h) {
      const Span& sp = spans_[sl.id];
      if (sp.length == len && same_bytes(buf + sp.offset, tok, len)) {
        ids_[n_words_++] = sl.id;
        return;
      }
    }
  }
}

void MtldWorkspace::grow_table() {
  std::vector<Slot> bigger(table_.size() * 2, Slot{0, 0, 0});
  const size_t mask = bigger.size() - 1;
  --table_shift_;
  for (uint32_t id = 0; id < n_unique_; ++id) {
    const Span& sp = spans_[id];
    const uint64_t hash = hash_token(lowered_.data() + sp.offset, sp.length);
    const auto h = uint32_t(hash >> 32);
    size_t slot = hash >> table_shift_;
    while (bigger[slot].stamp == text_stamp_) slot = (slot + 1) & mask;
    bigger[slot] = Slot{text_stamp_, h, id};
  }
  table_.swap(bigger);
}

std::string_view MtldWorkspace::token(size_t k) const {
  const Span& sp = spans_[ids_[k]];
  return {reinterpret_cast<const char*>(lowered_.data() + sp.offset), sp.length};
}

double MtldWorkspace::ttr() const {
  if (n_words_ == 0) return std::numeric_limits<double>::quiet_NaN();
  return double(n_unique_) / double(n_words_);
}

// max_types_[c] = the largest t with double(t) / double(c) <= threshold, so the
// per-token test "ttr <= threshold" becomes an integer compare with the same outcome
// (a correctly rounded quotient is monotonic in t).
void MtldWorkspace::prepare_limits(double threshold, size_t n) {
  if (threshold != limits_threshold_) {
    max_types_.assign(1, 0u);
    limits_threshold_ = threshold;
  }
  for (size_t c = max_types_.size(); c <= n; ++c) {
    auto t = size_t(std::floor(threshold * double(c)));
    if (t > c) t = c;
    while (t < c && double(t + 1) / double(c) <= threshold) ++t;
    while (t > 0 && !(double(t) / double(c) <= threshold)) --t;
    max_types_.push_back(uint32_t(t));
  }
}

namespace {

// One direction of lexicalrichness' sub_mtld; `seen` holds a segment stamp per id.
struct Direction {
  uint32_t* seen;
  uint32_t stamp;  // current segment's stamp (a local copy: seen[] cannot alias it)
  size_t types = 0;
  size_t count = 0;
  double factors = 0.0;

  void add(uint32_t id, const uint32_t* max_types) {
    ++count;
    // Branch-free type set update: whether a token repeats is a coin flip for the
    // branch predictor, while the reset below is rare.
    types += seen[id] != stamp;
    seen[id] = stamp;
    if (types <= max_types[count]) {  // ttr = types / count <= threshold
      count = 0;
      types = 0;
      factors += 1.0;
      ++stamp;
    }
  }

  // The same floating-point operations, in the same order, as sub_mtld's tail.
  double finish(size_t n, size_t terms, double threshold) {
    if (count > 0) {
      const double ttr = double(types) / double(count);  // the last ttr of the loop
      factors += (1.0 - ttr) / (1.0 - threshold);
    }
    if (factors == 0.0) {
      const double ttr = double(terms) / double(n);
      factors += ttr == 1.0 ? 1.0 : (1.0 - ttr) / (1.0 - threshold);
    }
    return double(n) / factors;
  }
};

}  // namespace

double MtldWorkspace::mtld(double threshold) {
  const size_t n = n_words_;
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  // A segment holds at most n_unique_ types, so it closes by the first count c with
  // n_unique_ / c <= threshold: the table never needs more counts than that (plus a margin for
  // rounding). Sized by n it was 4 bytes a word, 1.7x a 256 MiB text while its vector grew.
  const double longest = std::ceil(double(n_unique_) / threshold) + 2.0;
  prepare_limits(threshold, longest < double(n) ? size_t(longest) : n);
  // Stamps grow by at most n + 1 per text; restart them before they could wrap.
  for (int d = 0; d < 2; ++d) {
    if (seen_[d].size() < n_unique_) seen_[d].resize(n_unique_, 0u);
    if (stamps_[d] > UINT32_MAX - n - 2) {
      std::fill(seen_[d].begin(), seen_[d].end(), 0u);
      stamps_[d] = 0;
    }
    ++stamps_[d];
  }
  // Both directions in one loop: two independent dependency chains.
  Direction forward{seen_[0].data(), stamps_[0]};
  Direction backward{seen_[1].data(), stamps_[1]};
  const uint32_t* ids = ids_.data();
  const uint32_t* max_types = max_types_.data();
  for (size_t k = 0; k < n; ++k) {
    forward.add(ids[k], max_types);
    backward.add(ids[n - 1 - k], max_types);
  }
  stamps_[0] = forward.stamp;
  stamps_[1] = backward.stamp;
  const double f = forward.finish(n, n_unique_, threshold);
  const double r = backward.finish(n, n_unique_, threshold);
  // statistics.mean of two floats is the correctly rounded (f + r) / 2; halving is
  // exact, so rounding f + r once gives the same double.
  return (f + r) * 0.5;
}

std::vector<std::string> tokenize(std::string_view text) {
  MtldWorkspace ws;
  ws.tokenize(text);
  std::vector<std::string> tokens;
  tokens.reserve(ws.words());
  for (size_t k = 0; k < ws.words(); ++k) tokens.emplace_back(ws.token(k));
  return tokens;
}

double mtld(std::string_view text, double threshold) {
  check_threshold(threshold);
  MtldWorkspace ws;
  ws.tokenize(text);
  return ws.mtld(threshold);
}

}  // namespace instructfast
