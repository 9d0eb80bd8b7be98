// The lexicalrichness 0.5.1 tokenizer and MTLD, bit-for-bit.
//
// Tokenizer: str.lower(); delete ASCII digit runs; delete U+2013, U+2014 and '-';
// every ASCII string.punctuation character becomes a space; str.split().
// Everything but the lowercasing is per code point, so one pass over the UTF-8 text
// does it all (the Final_Sigma rule of lower() looks at the original text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace instructfast {

// Throws std::invalid_argument unless 0 < threshold < 1.
void check_threshold(double threshold);

// Per-thread reusable state. Tokens of the current text are interned to small ids
// (0, 1, ... in order of first appearance) so MTLD runs over integers; buffers only
// grow, so after warm-up a text is processed without heap allocation.
class MtldWorkspace {
 public:
  MtldWorkspace();

  // Tokenizes `text` (UTF-8); the accessors below then describe it.
  void tokenize(std::string_view text);

  size_t words() const { return n_words_; }
  size_t unique_words() const { return n_unique_; }
  // The k-th token (0 <= k < words()), valid until the next tokenize().
  std::string_view token(size_t k) const;
  // terms / words, NaN for zero words.
  double ttr() const;
  // Mean of forward and reverse MTLD, NaN for zero words. threshold in (0, 1).
  double mtld(double threshold);

 private:
  struct Span {
    size_t offset;
    size_t length;
  };
  struct Slot {
    uint32_t stamp;  // occupied for the current text iff stamp == text_stamp_
    uint32_t hash;   // upper half of the token's 64-bit hash
    uint32_t id;
  };

  void finish_token(size_t begin, size_t end, bool dirty);
  void grow_table();
  void prepare_limits(double threshold, size_t n);

  std::vector<uint8_t> lowered_;  // the current text lowercased; tokens are spans of it
  std::vector<Span> spans_;       // id -> its bytes in lowered_ (first n_unique_)
  std::vector<uint32_t> ids_;     // the token sequence (first n_words_)
  size_t n_words_ = 0;
  size_t n_unique_ = 0;
  std::vector<Slot> table_;       // open addressing, power-of-two size
  int table_shift_;               // slot = hash >> table_shift_ (top bits)
  uint32_t text_stamp_ = 0;
  std::vector<uint32_t> seen_[2];  // per direction: id -> segment stamp (MTLD type set)
  uint32_t stamps_[2] = {0, 0};
  std::vector<uint32_t> max_types_;  // see prepare_limits
  double limits_threshold_ = -1.0;
};

// Single-text helpers (tests, the Python facade).
std::vector<std::string> tokenize(std::string_view text);
double mtld(std::string_view text, double threshold);  // NaN for zero tokens

}  // namespace instructfast
