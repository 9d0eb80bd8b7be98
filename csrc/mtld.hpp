// The lexicalrichness 0.5.1 tokenizer and MTLD, bit-for-bit.
//
// Tokenizer: str.lower(); delete ASCII digit runs; delete U+2013, U+2014 and '-';
// every ASCII string.punctuation character becomes a space; str.split().
// Everything but the lowercasing is per code point, so one pass over the UTF-8 text
// does it all (the Final_Sigma rule of lower() looks at the original text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace instructfast {

// Throws std::invalid_argument unless 0 < threshold < 1.
void check_threshold(double threshold);

// A buffer that only grows and whose content does not survive growth. Allocated with
// calloc: the kernel maps zero pages lazily, so only the bytes a text actually writes
// become resident (a std::vector's resize would touch all of a 256 MiB record's
// worst-case 2x lowercase buffer and its token-id array up front).
template <typename T>
class ScratchBuffer {
 public:
  T* data() { return ptr_.get(); }
  const T* data() const { return ptr_.get(); }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return ptr_.get()[i]; }
  const T& operator[](size_t i) const { return ptr_.get()[i]; }
  void ensure(size_t n) {
    if (n <= size_) return;
    ptr_.reset();  // free first: the old content is not needed
    T* p = static_cast<T*>(std::calloc(n, sizeof(T)));
    if (p == nullptr) throw std::bad_alloc();
    ptr_.reset(p);
    size_ = n;
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr_;
  size_t size_ = 0;
};

// Per-thread reusable state. Tokens of the current text are interned to small ids
// (0, 1, ... in order of first appearance) so MTLD runs over integers; buffers only
// grow, so after warm-up a text is processed without heap allocation.
class MtldWorkspace {
 public:
  MtldWorkspace();

  // Tokenizes `text` (UTF-8); the accessors below then describe it.
  void tokenize(std::string_view text);

  // Byte offset of the first invalid UTF-8 sequence of the last text, or -1 (found while
  // tokenizing: every non-ASCII byte goes through the decoder, so this costs one
  // compare per non-ASCII code point).
  int64_t first_invalid() const { return first_invalid_; }

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

  ScratchBuffer<uint8_t> lowered_;  // the current text lowercased; tokens are spans of it
  std::vector<Span> spans_;         // id -> its bytes in lowered_ (first n_unique_)
  ScratchBuffer<uint32_t> ids_;     // the token sequence (first n_words_)
  int64_t first_invalid_ = -1;
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
