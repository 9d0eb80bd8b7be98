// Per-row text statistics (word counts, TTR, MTLD, length) over an Arrow string
// array, computed by a pool of threads with one reusable workspace each.
#pragma once

#include <cstdint>

#include "arrow_strings.hpp"

namespace instructfast {

// Caller-owned output columns, each of length rows.size().
struct TextStatsColumns {
  bool* valid;            // false for null rows (whose other values are 0 / NaN)
  int64_t* words;
  int64_t* unique_words;
  double* ttr;            // NaN when words == 0
  double* mtld;           // NaN when words == 0 or MTLD was not requested
  int64_t* chars;         // code points of the original text
  int64_t* bytes;         // UTF-8 bytes
  int64_t* utf8_error;    // byte offset of the first invalid UTF-8 sequence, -1 for valid text and nulls
};

// threads <= 0 uses std::thread::hardware_concurrency(). Throws std::invalid_argument
// for a threshold outside (0, 1). Invalid UTF-8 is not an error here: it is found while
// tokenizing and reported per row in utf8_error (the values of such a row describe the
// bytes as they are: an invalid byte counts as one character of a word); callers decide.
void compute_text_stats(const ArrowStringArray& rows, const TextStatsColumns& out, double threshold,
                        bool with_mtld, int threads);

}  // namespace instructfast
